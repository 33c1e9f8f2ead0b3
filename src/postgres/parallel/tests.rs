use super::rows::BATCH;
use super::*;
use std::io::Write;

/// Feeds `input` to a block in pieces of `step` bytes: the rows of every
/// batch and of the end, and where the end marker ended.
fn scan(input: &[u8], step: usize) -> (Vec<Vec<u8>>, Option<usize>) {
    let mut c = CopyBlock::new("COPY t (a) FROM stdin", "t");
    let mut batches = Vec::new();
    let mut at = 0;
    for piece in input.chunks(step) {
        match c.take(piece) {
            Taken::More(Some(b)) => batches.push(b),
            Taken::More(None) => {}
            Taken::End(used) => {
                batches.push(std::mem::take(&mut c.rows));
                return (batches, Some(at + used));
            }
        }
        at += piece.len();
    }
    batches.push(std::mem::take(&mut c.rows));
    (batches, None)
}

#[test]
fn the_end_marker_is_found_at_a_line_start_only() {
    let rows = b"1\tx\n2\t\\\\.\n\\\\.\n3\ta\\.b\n";
    let mut input = rows.to_vec();
    input.extend_from_slice(b"\\.\nSELECT 1;\n");
    for step in [1, 2, 3, 4, 5, 7, 64] {
        let (batches, end) = scan(&input, step);
        assert_eq!(batches.concat(), rows.to_vec(), "step {step}");
        assert_eq!(end, Some(rows.len() + 3), "step {step}");
    }
    // An empty block: the marker right away.
    assert_eq!(scan(b"\\.\nX", 1), (vec![vec![]], Some(3)));
    assert_eq!(scan(b"\\.\nX", 10), (vec![vec![]], Some(3)));
}

#[test]
fn batches_are_whole_lines_of_about_batch_bytes() {
    let line = b"12345\tsome text of a row\n";
    let n = BATCH * 5 / 2 / line.len();
    let mut input: Vec<u8> = line.repeat(n);
    let rows = input.clone();
    input.extend_from_slice(b"\\.\n");
    let (batches, end) = scan(&input, 1 << 16);
    assert_eq!(end, Some(input.len()));
    assert_eq!(batches.len(), 3);
    assert_eq!(batches.concat(), rows);
    for b in &batches {
        assert!(b.ends_with(b"\n") && b.len() <= BATCH + (1 << 16));
    }
}

#[test]
fn a_stream_cut_in_the_rows_is_told_from_a_last_marker() {
    let mut c = CopyBlock::new("COPY t FROM stdin", "t");
    assert_eq!(c.take(b"1\n\\."), Taken::More(None));
    assert!(c.ends_at_eof());
    assert_eq!(c.rows, b"1\n");
    let mut c = CopyBlock::new("COPY t FROM stdin", "t");
    assert_eq!(c.take(b"1\n2"), Taken::More(None));
    assert!(!c.ends_at_eof());
}

#[test]
fn names_of_tables_in_statements() {
    assert_eq!(leading_name("public.t (a, b) FROM stdin"), "public.t");
    assert_eq!(
        leading_name(r#""My Schema"."a ""b"" c" (x) FROM stdin"#),
        r#""My Schema"."a ""b"" c""#
    );
    let t = |s: &str| entry_table(s.as_bytes()).map(str::to_string);
    assert_eq!(
        t("\nALTER TABLE ONLY public.pgbench_accounts\n    ADD CONSTRAINT k PRIMARY KEY (aid);\n"),
        Some("public.pgbench_accounts".into())
    );
    assert_eq!(
        t("CREATE UNIQUE INDEX i ON ONLY \"S\".\"t x\" USING btree (a);\n"),
        Some("\"S\".\"t x\"".into())
    );
    assert_eq!(
        t("CREATE INDEX i ON public.t USING btree (a);\n"),
        Some("public.t".into())
    );
    assert_eq!(t("GRANT ALL ON TABLE public.t TO x;\n"), None);
}

#[test]
fn entry_headers() {
    assert_eq!(
        entry_type(b"-- Name: t k; Type: CONSTRAINT; Schema: public; Owner: o").as_deref(),
        Some("CONSTRAINT")
    );
    assert_eq!(
        entry_type(b"-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: o").as_deref(),
        Some("TABLE DATA")
    );
    assert_eq!(entry_type(b"-- Name: x"), None);
}

#[test]
fn every_post_data_entry_says_its_tablespace() {
    let mut s = Splitter::new("", 2, "");
    s.phase = Phase::Data;
    let dump =
        "SET default_tablespace = relic_ts;\n\n--\n-- Name: b; Type: TABLE; Schema: public\n--\n\n\
        --\n-- Name: a_x; Type: INDEX; Schema: public; Owner: o; Tablespace: relic_ts\n--\n\n\
        CREATE INDEX a_x ON public.a USING btree (x);\n\n\nSET default_tablespace = '';\n\n\
        --\n-- Name: a_x2; Type: INDEX; Schema: public; Owner: o\n--\n\n\
        CREATE INDEX a_x2 ON public.a USING btree (x);\n\n\
        --\n-- Name: a_x3; Type: INDEX; Schema: public; Owner: o\n--\n\n\
        CREATE INDEX a_x3 ON public.a USING btree (x);\n";
    s.write_all(dump.as_bytes()).unwrap();
    let starts: Vec<String> = s
        .post
        .iter()
        .map(|(_, text)| {
            String::from_utf8_lossy(text)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        starts,
        [
            "SET default_tablespace = relic_ts;",
            "SET default_tablespace = relic_ts;",
            "SET default_tablespace = '';",
            "SET default_tablespace = '';",
        ]
    );
}

#[test]
fn a_dump_cut_inside_its_rows_is_refused_not_loaded() {
    let mut s = Splitter::new("", 2, "");
    s.phase = Phase::Data;
    s.table_data = true;
    s.write_all(b"COPY public.t (a) FROM stdin;\n1\n2").unwrap();
    let r = s.finish(true, &crate::progress::NoProgress, || Ok(()));
    match r {
        Err(Error::Refused(m)) => assert!(m.contains("inside the rows of public.t"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn comment_headers_alone_need_no_session() {
    assert!(!has_statements(b""));
    assert!(!has_statements(
        b"\n--\n-- Name: t; Type: TABLE DATA\n--\n\n"
    ));
    assert!(has_statements(
        b"--\nSELECT pg_catalog.setval('s', 3, true);\n"
    ));
    assert!(has_statements(b"  \\restrict x\n"));
}
