//! PostgreSQL helpers: the server scripts/pg-start.sh starts, reached over
//! the local socket as a superuser role named after the current user.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

/// A fresh database name, unique per test process and call.
pub fn dbname(tag: &str) -> String {
    format!(
        "relic_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

pub fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn createdb(db: &str) {
    psql("postgres", &format!("CREATE DATABASE {db}"));
}

pub fn dropdb(db: &str) {
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}

/// A plain dump without its `\restrict KEY` / `\unrestrict KEY` lines:
/// pg_dump (15.14 and later) writes a new random key into every dump, the
/// one part of two dumps of the same database that always differs.
pub fn pg_dump(db: &str) -> Vec<u8> {
    let out = Command::new("pg_dump")
        .args(["--format=plain", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    unrestricted(&out.stdout)
}

/// A plain dump (from pg_dump, or as relic stored it) without its
/// `\restrict KEY` / `\unrestrict KEY` lines.
pub fn unrestricted(dump: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(dump).unwrap();
    text.lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// A schema with an Alembic revision, a few thousand rows in several
/// tables, text, NULLs, bytea and large objects.
pub fn populate(db: &str, revision: &str) {
    psql(
        db,
        &format!(
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
             INSERT INTO alembic_version VALUES ('{revision}');
             CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, email text, note text);
             INSERT INTO people (name, email, note)
               SELECT 'person ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'p' || g || '@example.org' END,
                      repeat('tab\there, newline\\n, quote '' ', g % 5)
               FROM generate_series(1, 3000) g;
             CREATE TABLE assignments (id serial PRIMARY KEY, person int REFERENCES people(id), day date, block text);
             INSERT INTO assignments (person, day, block)
               SELECT 1 + g % 3000, date '2026-01-01' + (g % 365), CASE WHEN g % 2 = 0 THEN 'AM' ELSE 'PM' END
               FROM generate_series(1, 5000) g;
             CREATE TABLE blobs (id int PRIMARY KEY, data bytea, doc oid);
             INSERT INTO blobs SELECT g, decode(md5(g::text) || md5((g * 7)::text), 'hex'), NULL FROM generate_series(1, 400) g;
             UPDATE blobs SET doc = lo_from_bytea(0, convert_to(repeat('large object ', 2000), 'UTF8')) WHERE id IN (1, 2);"
        ),
    );
}

/// A populated database with one table owned by a role of its own; once
/// [`drop_owner`] removes the role, restoring a dump taken before fails
/// part way through (`role … does not exist`). Returns (database, role).
pub fn db_with_own_role(tag: &str) -> (String, String) {
    let db = dbname(tag);
    let role = format!("{db}_owner");
    createdb(&db);
    populate(&db, "r1");
    psql(
        &db,
        &format!("CREATE ROLE {role}; ALTER TABLE blobs OWNER TO {role}"),
    );
    (db, role)
}

pub fn drop_owner(db: &str, role: &str) {
    psql(
        db,
        &format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP ROLE {role}"),
    );
}
