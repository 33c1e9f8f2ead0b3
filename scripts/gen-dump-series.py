#!/usr/bin/env python3
"""Generate a deterministic series of daily PostgreSQL plain-format dumps.

Each file DIR/dayNN.sql looks like `pg_dump --format=plain` output of a small
HR/planning database: header comments, SET lines, CREATE TABLE/SEQUENCE,
`COPY public.t (...) FROM stdin;` blocks (tab separated, NULL as \\N, ended by
`\\.`), sequence values, then constraints and indexes.

Between two days the database changes the way a live PostgreSQL heap does:

* a fraction (--update-frac) of the rows of the mutable tables is updated,
  mostly recent rows (--hot-window), some anywhere (--cold-frac); staff
  records (people) change 4x less often, uniformly. MVCC writes the new row
  version elsewhere, so the row disappears from its old position and
  reappears at the end of the table (or, with --reuse-frac, in space freed
  on an earlier day and reclaimed by autovacuum);
* new rows are inserted (at the end, or into reclaimed space), a few are
  deleted (leaving reusable holes);
* audit_log is append-only and grows every day.

pg_dump emits rows in physical order, so this reproduces the byte-level
shifts that make naive fixed-size-block dedup fail on real dumps.

Day 1 is about --size-mb MB (1 MB = 10^6 bytes); later days grow by roughly
1-2 % per day with the default fractions. Output depends only on the
arguments (seeded PRNG), never on time or environment.
"""

import argparse
import os
import random
import sys
import time

MB = 1_000_000

FIRST_NAMES = (
    "Anna Ben Clara David Emma Felix Greta Hannah Isabel Jonas Karl Lena Lukas "
    "Marie Noah Olga Paul Quentin Rosa Sophie Tim Ursula Valentin Wiebke Xaver "
    "Yara Zoe Ahmed Aylin Björn Chloé Dmitri Elif Fatima Giulia Hiro Ines Jamal "
    "Katarzyna Leon Maja Nikolai Oscar Priya Rafael Sven Tereza Ulf Vera William "
    "José Zoë Søren Małgorzata Ángel Jürgen Amélie Kemal Saanvi Mateo Nora Ida "
    "Emil Frieda Hugo Ella Theo Mila Finn Lotta Anton Luisa Oskar Johanna"
).split()
LAST_NAMES = (
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann "
    "Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann "
    "Braun Krüger Hofmann Hartmann Lange Schmitt Werner Krause Meier Lehmann "
    "Smith Johnson Garcia Martínez Rossi Dubois Nowak Kowalski Yılmaz Kaya "
    "Novák Andersen Jensen Nielsen Silva Santos Costa Ferreira Tanaka Suzuki "
    "O'Brien Murphy Kelly Walsh Ivanova Popescu Horvat Papadopoulos Lindqvist "
    "Virtanen Korhonen Van_der_Berg De_Vries Janssen Peeters Nguyen Tran Kim Lee"
).replace("_", " ").split()
ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "ë": "e",
                      "á": "a", "ø": "o", "ł": "l", "ı": "i", "í": "i", "ó": "o",
                      " ": "", "'": ""})
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example", "posteo.example"]
DEPARTMENTS = list(range(1, 41))
ROLES = ["developer", "lead", "analyst", "nurse", "physician", "coordinator",
         "technician", "consultant", "trainee", "manager", "support", "driver"]
STATUSES = ["planned", "active", "active", "active", "paused", "completed", "cancelled"]
ABSENCE_KINDS = ["vacation", "vacation", "sick", "sick_child", "training",
                 "parental_leave", "comp_time", "special_leave"]
ABSENCE_COMMENTS = ["", "", "", "approved by phone", "doctor's note on file",
                    "half day", "school holidays", "conference in Berlin",
                    "moved from previous week", "requested via app"]
MIMES = ["text/plain", "text/markdown", "text/html", "application/pdf",
         "image/png", "application/vnd.oasis.opendocument.text"]
ACTIONS = ["insert", "update", "update", "update", "delete", "login", "export"]
ENTITIES = ["people", "assignments", "absences", "documents"]
CLIENTS = ["web/4.2.1", "web/4.3.0", "android/3.9.2", "ios/3.9.4", "api/1.7", "cron/sync"]
WORDS = (
    "the of and to in is for on that with as by this be are from at or it an "
    "schedule shift roster team employee patient ward project budget invoice "
    "meeting report review approval request change update customer contract "
    "delivery warehouse order quality safety training audit compliance policy "
    "handover night weekend overtime holiday replacement coverage capacity "
    "planning forecast incident ticket escalation deadline milestone sprint "
    "release feature regression database backup restore migration index query "
    "please note that we will need to confirm before after during monday "
    "tuesday wednesday thursday friday morning evening urgent routine minor "
    "major pending resolved discussed agreed rejected postponed scheduled "
    "according following previous next current additional required optional"
).split()

SCHEMA = {
    "absences": [
        ("id", "bigint NOT NULL"), ("person_id", "bigint NOT NULL"),
        ("kind", "text NOT NULL"), ("starts_on", "date NOT NULL"),
        ("ends_on", "date NOT NULL"), ("approved_by", "bigint"),
        ("comment", "text"), ("created_at", "timestamp with time zone NOT NULL"),
        ("updated_at", "timestamp with time zone NOT NULL"),
    ],
    "assignments": [
        ("id", "bigint NOT NULL"), ("person_id", "bigint NOT NULL"),
        ("project_code", "character varying(16) NOT NULL"), ("role", "text NOT NULL"),
        ("starts_on", "date NOT NULL"), ("ends_on", "date"),
        ("hours_per_week", "numeric(5,2) NOT NULL"), ("rate", "numeric(10,2)"),
        ("status", "text NOT NULL"), ("updated_at", "timestamp with time zone NOT NULL"),
    ],
    "audit_log": [
        ("id", "bigint NOT NULL"), ("occurred_at", "timestamp with time zone NOT NULL"),
        ("actor_id", "bigint"), ("action", "text NOT NULL"), ("entity", "text NOT NULL"),
        ("entity_id", "bigint NOT NULL"), ("payload", "jsonb NOT NULL"), ("client_ip", "inet"),
    ],
    "documents": [
        ("id", "bigint NOT NULL"), ("uuid", "uuid NOT NULL"), ("owner_id", "bigint NOT NULL"),
        ("title", "text NOT NULL"), ("mime_type", "text NOT NULL"), ("body", "text"),
        ("thumbnail", "bytea"), ("created_at", "timestamp with time zone NOT NULL"),
        ("updated_at", "timestamp with time zone NOT NULL"),
    ],
    "people": [
        ("id", "bigint NOT NULL"), ("uuid", "uuid NOT NULL"), ("first_name", "text NOT NULL"),
        ("last_name", "text NOT NULL"), ("email", "text NOT NULL"), ("phone", "text"),
        ("birth_date", "date"), ("department_id", "integer NOT NULL"),
        ("active", "boolean DEFAULT true NOT NULL"), ("notes", "text"),
        ("created_at", "timestamp with time zone NOT NULL"),
        ("updated_at", "timestamp with time zone NOT NULL"),
    ],
}
# Share of day-1 bytes per table.
BUDGET = {"documents": 0.44, "audit_log": 0.20, "assignments": 0.20,
          "absences": 0.10, "people": 0.06}
# Per-day insert and delete fractions of the live rows (audit_log: see below).
INSERT_FRAC = {"people": 0.002, "assignments": 0.008, "absences": 0.012, "documents": 0.006}
DELETE_FRAC = {"people": 0.0005, "assignments": 0.002, "absences": 0.003, "documents": 0.002}
AUDIT_PER_CHANGE = 0.5   # audit_log rows appended per changed row
PEOPLE_UPDATE_SCALE = 0.25  # people rows change 4x less often than --update-frac

# Calendar helpers: day 0 of the model is 2024-01-01; dates cover 1950..2030.
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _all_dates(y0, y1):
    out = []
    for y in range(y0, y1):
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        for m, nd in enumerate(_DAYS_IN_MONTH, 1):
            for d in range(1, nd + (1 if m == 2 and leap else 0) + 1):
                out.append(f"{y:04d}-{m:02d}-{d:02d}")
    return out


DATES = _all_dates(1950, 2031)
DATE_IDX = {d: i for i, d in enumerate(DATES)}
EPOCH = DATE_IDX["2024-01-01"]
BIRTH_DATES = DATES[DATES.index("1955-01-01"):DATES.index("2006-01-01")]
CLOCK = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
WORK_CLOCK = CLOCK[6 * 3600:20 * 3600]


class Gen:
    """Column-wise (vectorised) row builders: one PRNG call per column batch."""

    def __init__(self, rng):
        self.rng = rng
        # Sentence pool for text payloads: prose-like, compressible, not repetitive
        # at chunk scale (bodies are random sequences of ~30 sentences).
        self.sentences = []
        for _ in range(20000):
            w = rng.choices(WORDS, k=rng.randint(6, 18))
            s = " ".join(w)
            self.sentences.append(s[0].upper() + s[1:] + rng.choice(".....?!"))

    def ints(self, lo, hi, n):
        return list(map(str, self.rng.choices(range(lo, hi), k=n)))

    def pick(self, seq, n):
        return self.rng.choices(seq, k=n)

    def uuids(self, n):
        h = self.rng.randbytes(16 * n).hex()
        return [f"{h[i:i+8]}-{h[i+8:i+12]}-4{h[i+13:i+16]}-a{h[i+17:i+20]}-{h[i+20:i+32]}"
                for i in range(0, 32 * n, 32)]

    def timestamps(self, day_lo, day_hi, n, clock=CLOCK):
        """timestamptz values with microseconds, UTC, as pg_dump prints them."""
        d = self.rng.choices(DATES[EPOCH + day_lo:EPOCH + day_hi], k=n)
        c = self.rng.choices(clock, k=n)
        us = self.rng.choices(range(1_000_000), k=n)
        return [f"{a} {b}.{u:06d}+00" for a, b, u in zip(d, c, us)]

    def nullable(self, values, frac):
        r = self.rng.random
        return [("\\N" if r() < frac else v) for v in values]

    def text(self, lo, hi):
        """Multi-paragraph text, COPY-escaped (newline -> \\n)."""
        rng = self.rng
        sents = rng.choices(self.sentences, k=rng.randint(lo, hi))
        paras, i = [], 0
        while i < len(sents):
            j = i + rng.randint(2, 7)
            paras.append(" ".join(sents[i:j]))
            i = j
        return "\\n\\n".join(paras)

    # --- one builder per table; `ids` are the new primary keys, `day` the model day.
    def people(self, ids, day, ctx):
        n = len(ids)
        fn, ln = self.pick(FIRST_NAMES, n), self.pick(LAST_NAMES, n)
        num = self.ints(1, 999, n)
        dom = self.pick(DOMAINS, n)
        email = [f"{a.lower().translate(ASCII)}.{b.lower().translate(ASCII)}{k}@{d}"
                 for a, b, k, d in zip(fn, ln, num, dom)]
        phone = self.nullable([f"+49 {a} {b}" for a, b in
                               zip(self.ints(151, 179, n), self.ints(1000000, 99999999, n))], 0.15)
        birth = self.nullable(self.pick(BIRTH_DATES, n), 0.05)
        dept = self.ints(1, 41, n)
        active = self.pick(["t", "t", "t", "t", "t", "t", "f"], n)
        notes = [("\\N" if self.rng.random() < 0.7 else self.text(1, 4)) for _ in range(n)]
        created = self.timestamps(min(day, 0) - 2000, day + 1, n)
        updated = self.timestamps(day, day + 1, n) if day > 0 else created
        cols = (map(str, ids), self.uuids(n), fn, ln, email, phone, birth, dept,
                active, notes, created, updated)
        return ["\t".join(t) + "\n" for t in zip(*cols)]

    def assignments(self, ids, day, ctx):
        n = len(ids)
        person = self.ints(1, ctx["people_max"] + 1, n)
        proj = [f"PRJ-{a}-{b}" for a, b in zip(self.pick("ABCDEFGHKLMNPRSTVW", n), self.ints(100, 9999, n))]
        role = self.pick(ROLES, n)
        start = self.rng.choices(range(EPOCH - 1500, EPOCH + day + 60), k=n)
        end = [("\\N" if self.rng.random() < 0.35 else DATES[s + self.rng.randint(7, 700)]) for s in start]
        hours = [f"{h}.{m}" for h, m in zip(self.ints(4, 41, n), self.pick(["00", "00", "50", "25", "75"], n))]
        rate = self.nullable([f"{a}.{b}" for a, b in zip(self.ints(18, 190, n), self.ints(10, 100, n))], 0.2)
        status = self.pick(STATUSES, n)
        updated = self.timestamps(min(day, 0) - 900, day + 1, n, WORK_CLOCK)
        cols = (map(str, ids), person, proj, role, [DATES[s] for s in start], end,
                hours, rate, status, updated)
        return ["\t".join(t) + "\n" for t in zip(*cols)]

    def absences(self, ids, day, ctx):
        n = len(ids)
        person = self.ints(1, ctx["people_max"] + 1, n)
        kind = self.pick(ABSENCE_KINDS, n)
        start = self.rng.choices(range(EPOCH - 1200, EPOCH + day + 120), k=n)
        end = [DATES[s + self.rng.choice((0, 0, 1, 2, 4, 4, 9, 13, 20))] for s in start]
        approver = self.nullable(self.ints(1, ctx["people_max"] + 1, n), 0.3)
        comment = [c if c else "\\N" for c in self.pick(ABSENCE_COMMENTS, n)]
        created = self.timestamps(min(day, 0) - 1200, day + 1, n, WORK_CLOCK)
        updated = self.timestamps(day, day + 1, n, WORK_CLOCK) if day > 0 else created
        cols = (map(str, ids), person, kind, [DATES[s] for s in start], end,
                approver, comment, created, updated)
        return ["\t".join(t) + "\n" for t in zip(*cols)]

    def documents(self, ids, day, ctx):
        n = len(ids)
        rng = self.rng
        owner = self.ints(1, ctx["people_max"] + 1, n)
        title = [rng.choice(self.sentences)[:rng.randint(12, 60)].rstrip() for _ in range(n)]
        mime = self.pick(MIMES, n)
        body = [self.text(5, 60) for _ in range(n)]
        # ~8 % carry a small binary thumbnail (bytea hex, backslash doubled by COPY).
        thumb = [("\\\\x" + rng.randbytes(rng.randint(512, 4096)).hex()) if rng.random() < 0.08
                 else "\\N" for _ in range(n)]
        created = self.timestamps(min(day, 0) - 1500, day + 1, n)
        updated = self.timestamps(day, day + 1, n) if day > 0 else created
        cols = (map(str, ids), self.uuids(n), owner, title, mime, body, thumb, created, updated)
        return ["\t".join(t) + "\n" for t in zip(*cols)]

    def audit_log(self, ids, day, ctx):
        n = len(ids)
        rng = self.rng
        actor = self.nullable(self.ints(1, ctx["people_max"] + 1, n), 0.1)
        action = self.pick(ACTIONS, n)
        entity = self.pick(ENTITIES, n)
        eid = self.ints(1, ctx["people_max"] * 4, n)
        req = self.uuids(n)
        client = self.pick(CLIENTS, n)
        fields = self.pick(["status", "phone", "ends_on", "hours_per_week", "notes", "title", "approved_by"], n)
        olds, news = self.ints(0, 100000, n), self.ints(0, 100000, n)
        payload = [f'{{"request_id": "{r}", "client": "{c}", "changes": {{"{f}": ["{o}", "{w}"]}}, '
                   f'"session": {{"mfa": {"true" if rng.random() < 0.6 else "false"}, "ttl": 3600}}}}'
                   for r, c, f, o, w in zip(req, client, fields, olds, news)]
        ip = self.nullable([f"10.{a}.{b}.{c}" for a, b, c in
                            zip(self.ints(0, 256, n), self.ints(0, 256, n), self.ints(1, 255, n))], 0.05)
        ts = sorted(self.timestamps(min(day, 0) - 365 if day <= 0 else day, day + 1, n))
        cols = (map(str, ids), ts, actor, action, entity, eid, payload, ip)
        return ["\t".join(t) + "\n" for t in zip(*cols)]


class Table:
    """Heap model: a list of row strings in physical order, None = dead slot."""

    def __init__(self, name):
        self.name = name
        self.rows = []
        self.free = []          # slots reclaimed by (auto)vacuum, reusable today
        self.dead = []          # slots that died today, reclaimed for tomorrow
        self.next_id = 1
        self.live = 0

    def take_ids(self, n):
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        return ids

    def place(self, row, rng, reuse_frac):
        if self.free and rng.random() < reuse_frac:
            self.rows[self.free.pop()] = row
        else:
            self.rows.append(row)
        self.live += 1

    def kill(self, slot):
        self.rows[slot] = None
        self.dead.append(slot)
        self.live -= 1

    def live_slots(self, k, rng, hot_window, cold_frac):
        """k distinct live slots. A share cold_frac is uniform over the table;
        the rest is recency-skewed: distance from the physical end is
        exponential with mean hot_window * table length (recent rows live at
        the end, and that is where business activity concentrates)."""
        k = min(k, self.live)
        picked, seen = [], set()
        n = len(self.rows)
        mean = max(1.0, hot_window * n)
        tries = 0
        while len(picked) < k:
            tries += 1
            if tries > 50 * k or rng.random() < cold_frac:
                s = rng.randrange(n)
            else:
                s = max(0, n - 1 - int(rng.expovariate(1.0 / mean)))
            if s not in seen and self.rows[s] is not None:
                seen.add(s)
                picked.append(s)
        return picked

    def vacuum(self, rng):
        self.free.extend(self.dead)
        self.dead = []
        rng.shuffle(self.free)


def mutate(table, fields, day, g):
    """Change a few columns of an existing row (fields = split row)."""
    rng = g.rng
    ts = g.timestamps(day, day + 1, 1)[0]
    if table == "people":
        c = rng.randrange(4)
        if c == 0:
            fields[5] = f"+49 {rng.randint(151, 179)} {rng.randint(1000000, 99999999)}"
        elif c == 1:
            fields[7] = str(rng.randint(1, 40))
        elif c == 2:
            fields[8] = "f" if fields[8] == "t" else "t"
        else:
            fields[9] = g.text(1, 4)
        fields[11] = ts
    elif table == "assignments":
        fields[8] = rng.choice(STATUSES)
        if rng.random() < 0.3:
            fields[6] = f"{rng.randint(4, 40)}.00"
        if rng.random() < 0.3:
            fields[5] = DATES[EPOCH + day + rng.randint(0, 400)]
        fields[9] = ts
    elif table == "absences":
        if rng.random() < 0.5:
            fields[5] = str(rng.randint(1, 5000))
        else:
            fields[4] = DATES[min(DATE_IDX[fields[3]] + rng.randint(0, 14), len(DATES) - 1)]
        fields[6] = rng.choice(ABSENCE_COMMENTS) or "\\N"
        fields[8] = ts
    elif table == "documents":
        # Edit the body: replace a sentence somewhere, sometimes append a paragraph.
        body = fields[5]
        if body != "\\N":
            parts = body.split(". ")
            i = rng.randrange(len(parts))
            parts[i] = rng.choice(g.sentences).rstrip(".?!")
            body = ". ".join(parts)
            if rng.random() < 0.4:
                body += "\\n\\n" + g.text(1, 5)
            fields[5] = body
        fields[8] = ts
    return "\t".join(fields) + "\n"


def header():
    return (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "-- Dumped from database version 15.6 (Debian 15.6-0+deb12u1)\n"
        "-- Dumped by pg_dump version 15.6 (Debian 15.6-0+deb12u1)\n\n"
        "SET statement_timeout = 0;\nSET lock_timeout = 0;\n"
        "SET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\n"
        "SET standard_conforming_strings = on;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n"
        "SET check_function_bodies = false;\nSET xmloption = content;\n"
        "SET client_min_messages = warning;\nSET row_security = off;\n\n"
        "SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n"
    )


def ddl(name):
    cols = ",\n".join(f"    {c} {t}" for c, t in SCHEMA[name])
    return (
        f"--\n-- Name: {name}; Type: TABLE; Schema: public; Owner: app\n--\n\n"
        f"CREATE TABLE public.{name} (\n{cols}\n);\n\n\n"
        f"ALTER TABLE public.{name} OWNER TO app;\n\n"
        f"--\n-- Name: {name}_id_seq; Type: SEQUENCE; Schema: public; Owner: app\n--\n\n"
        f"CREATE SEQUENCE public.{name}_id_seq\n    START WITH 1\n    INCREMENT BY 1\n"
        f"    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1;\n\n\n"
        f"ALTER TABLE public.{name}_id_seq OWNER TO app;\n\n"
        f"--\n-- Name: {name}_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: app\n--\n\n"
        f"ALTER SEQUENCE public.{name}_id_seq OWNED BY public.{name}.id;\n\n\n"
    )


def trailer():
    out = []
    for name in sorted(SCHEMA):
        out.append(f"--\n-- Name: {name} id; Type: DEFAULT; Schema: public; Owner: app\n--\n\n"
                   f"ALTER TABLE ONLY public.{name} ALTER COLUMN id SET DEFAULT "
                   f"nextval('public.{name}_id_seq'::regclass);\n\n\n")
    for name in sorted(SCHEMA):
        out.append(f"--\n-- Name: {name} {name}_pkey; Type: CONSTRAINT; Schema: public; Owner: app\n--\n\n"
                   f"ALTER TABLE ONLY public.{name}\n    ADD CONSTRAINT {name}_pkey PRIMARY KEY (id);\n\n\n")
    idx = [("absences", "person_id, starts_on"), ("assignments", "person_id"),
           ("assignments", "project_code"), ("audit_log", "occurred_at"),
           ("audit_log", "entity, entity_id"), ("documents", "owner_id"), ("people", "email")]
    for t, c in idx:
        iname = f"{t}_{c.replace(', ', '_')}_idx"
        out.append(f"--\n-- Name: {iname}; Type: INDEX; Schema: public; Owner: app\n--\n\n"
                   f"CREATE INDEX {iname} ON public.{t} USING btree ({c});\n\n\n")
    for t in ("absences", "assignments", "documents"):
        col = "owner_id" if t == "documents" else "person_id"
        out.append(f"--\n-- Name: {t} {t}_{col}_fkey; Type: FK CONSTRAINT; Schema: public; Owner: app\n--\n\n"
                   f"ALTER TABLE ONLY public.{t}\n    ADD CONSTRAINT {t}_{col}_fkey FOREIGN KEY ({col}) "
                   f"REFERENCES public.people(id) ON DELETE CASCADE;\n\n\n")
    out.append("--\n-- PostgreSQL database dump complete\n--\n\n")
    return "".join(out)


def write_dump(path, tables):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="", buffering=1 << 22) as f:
        f.write(header())
        for name in sorted(SCHEMA):
            f.write(ddl(name))
        for name in sorted(SCHEMA):
            t = tables[name]
            cols = ", ".join(c for c, _ in SCHEMA[name])
            f.write(f"--\n-- Data for Name: {name}; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n"
                    f"COPY public.{name} ({cols}) FROM stdin;\n")
            f.writelines(r for r in t.rows if r is not None)
            f.write("\\.\n\n\n")
        for name in sorted(SCHEMA):
            f.write(f"--\n-- Name: {name}_id_seq; Type: SEQUENCE SET; Schema: public; Owner: app\n--\n\n"
                    f"SELECT pg_catalog.setval('public.{name}_id_seq', {tables[name].next_id - 1}, true);\n\n\n")
        f.write(trailer())
    os.replace(tmp, path)


def build_day1(tables, g, size):
    """Fill each table up to its byte budget (people first: others reference it)."""
    ctx = {"people_max": 1}
    for name in ("people", "assignments", "absences", "documents", "audit_log"):
        t, budget, used, batch = tables[name], BUDGET[name] * size, 0, 256
        while used < budget:
            rows = getattr(g, name)(t.take_ids(batch), 0, ctx)
            for r in rows:
                t.rows.append(r)
                used += len(r)  # ~bytes: text is nearly all ASCII
                if used >= budget:
                    break
            t.next_id = t.live = len(t.rows)
            t.next_id += 1
            batch = min(batch * 2, 20000)
        if name == "people":
            ctx["people_max"] = t.next_id - 1
    return ctx


def advance(tables, g, day, ctx, args):
    rng = g.rng
    changes = 0
    for t in tables.values():
        t.vacuum(rng)
    for name in ("people", "assignments", "absences", "documents"):
        t = tables[name]
        # Updates: old version dies in place, new version goes to free space / end.
        frac, hot, cold = args.update_frac, args.hot_window, args.cold_frac
        if name == "people":   # staff records: fewer, uniformly spread changes
            frac, cold = frac * PEOPLE_UPDATE_SCALE, 1.0
        slots = t.live_slots(round(frac * t.live), rng, hot, cold)
        new_rows = [mutate(name, t.rows[s][:-1].split("\t"), day, g) for s in slots]
        for s in slots:
            t.kill(s)
        for r in new_rows:
            t.place(r, rng, args.reuse_frac)
        # Deletes.
        dels = t.live_slots(round(DELETE_FRAC[name] * t.live), rng, hot, cold)
        for s in dels:
            t.kill(s)
        # Inserts.
        n_ins = max(1, round(INSERT_FRAC[name] * t.live))
        for r in getattr(g, name)(t.take_ids(n_ins), day, ctx):
            t.place(r, rng, args.reuse_frac)
        if name == "people":
            ctx["people_max"] = t.next_id - 1
        changes += len(slots) + len(dels) + n_ins
    a = tables["audit_log"]
    for r in g.audit_log(a.take_ids(round(changes * AUDIT_PER_CHANGE)), day, ctx):
        a.rows.append(r)
        a.live += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--size-mb", type=float, default=100.0, help="approx. size of day 1 (MB = 1e6 bytes)")
    ap.add_argument("--update-frac", type=float, default=0.02,
                    help="fraction of rows of mutable tables updated per day (default 0.02)")
    ap.add_argument("--hot-window", type=float, default=0.05,
                    help="recency skew: mean distance of an updated/deleted row from the table end, "
                         "as a fraction of the table (default 0.05)")
    ap.add_argument("--cold-frac", type=float, default=0.01,
                    help="share of updates/deletes hitting uniformly random rows anywhere (default 0.01)")
    ap.add_argument("--reuse-frac", type=float, default=0.3,
                    help="chance a new row version lands in space freed on an earlier day (default 0.3)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    g = Gen(rng)
    tables = {name: Table(name) for name in SCHEMA}
    size = int(args.size_mb * MB)
    ctx = None
    for day in range(1, args.days + 1):
        t0 = time.monotonic()
        if day == 1:
            ctx = build_day1(tables, g, size)
        else:
            advance(tables, g, day - 1, ctx, args)
        path = os.path.join(args.out, f"day{day:02d}.sql")
        write_dump(path, tables)
        print(f"{path}: {os.path.getsize(path) / MB:.1f} MB in {time.monotonic() - t0:.1f}s",
              file=sys.stderr)


if __name__ == "__main__":
    main()
