//! The report as one self-contained HTML page: inline CSS and SVG, no
//! script, no font, no image, no link that loads anything, so it opens
//! the same from a file, a mail attachment or `relic report --serve`, and
//! nothing leaves the machine when it is viewed.

use super::svg::{self, bytes, esc, Column, Dot, Point};
use super::Report;
use std::fmt::Write;

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2330; --muted: #5d6678; --line: #d9dee8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #f6f7fb; }
header { background: #1d2330; color: #fff; padding: 14px 20px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 2px 0 0; color: #c6ccda; font-size: 13px; word-break: break-all; }
main { max-width: 1100px; margin: 0 auto; padding: 12px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin: 12px 0; }
h2 { font-size: 17px; margin: 0 0 8px; }
.warnings { background: #fdecec; border-color: #e5a3a3; }
.warnings li { color: #b3261e; font-weight: 600; }
.ok { color: #1f7a3a; font-weight: 600; }
.bad { color: #b3261e; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 8px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.card b { display: block; font-size: 18px; }
.card span { color: var(--muted); font-size: 12px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; background: #eef1f7; padding: 1px 4px; border-radius: 3px; white-space: pre-wrap; word-break: break-all; }
.chart { width: 100%; height: auto; display: block; }
.grid { stroke: #e3e7ef; stroke-width: 1; }
.axis { fill: var(--muted); font-size: 11px; }
.line { fill: none; stroke: #3867d6; stroke-width: 2; }
.dot { fill: #3867d6; } .event { fill: #e67e22; } .event-label { fill: #b85c00; }
.dedup { fill: #b8c4dc; } .delta { fill: #7b61c9; } .new { fill: #3867d6; } .overhead { fill: #9aa3b5; }
.daily { fill: #3867d6; } .named { fill: #16a085; } .safety { fill: #9aa3b5; } .immaculate { fill: #e67e22; } .sacred { fill: #c0392b; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; vertical-align: -1px; }
.muted { color: var(--muted); }
@media (max-width: 600px) { main { padding: 6px; } section { padding: 10px; } th, td { padding: 3px 5px; } }
"#;

fn legend(items: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(r#"<div class="legend">"#);
    for (class, color, label) in items {
        let _ = write!(
            s,
            r#"<span><i class="{class}" style="background:{color}"></i>{}</span>"#,
            esc(label)
        );
    }
    s.push_str("</div>");
    s
}

/// A time that parses (one that does not is left off a chart rather than
/// drawn at 1970).
fn parses(t: &str) -> bool {
    t.parse::<jiff::Timestamp>().is_ok()
}

fn seconds(t: &str) -> f64 {
    t.parse::<jiff::Timestamp>()
        .map(|t| t.as_second() as f64)
        .unwrap_or(0.0)
}

fn when(t: &str) -> String {
    t.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The page.
pub fn page(r: &Report) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let title = match &r.scope {
        Some(n) => format!("relic report: {n}"),
        None => "relic report".to_string(),
    };
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"><link rel="icon" href="data:,"><title>{}</title><style>{STYLE}</style></head><body><header><h1>{}</h1><p>{} · generated {}</p></header><main>"#,
        esc(&title),
        esc(&title),
        esc(&r.repository),
        esc(&when(&r.generated))
    );

    // Warnings first.
    if r.warnings.is_empty() {
        s.push_str(r#"<section id="warnings" class="status"><h2>Status</h2><p class="ok">No warnings: last backup recent, drills and checks passing, copies current.</p></section>"#);
    } else {
        s.push_str(r#"<section id="warnings" class="warnings"><h2>Warnings</h2><ul>"#);
        for w in &r.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul></section>");
    }

    // The figures at a glance.
    let t = &r.totals;
    let card = |s: &mut String, v: String, label: &str| {
        let _ = write!(
            s,
            r#"<div class="card"><b>{}</b><span>{}</span></div>"#,
            esc(&v),
            esc(label)
        );
    };
    s.push_str(r#"<section id="summary"><h2>Repository</h2><div class="cards">"#);
    card(&mut s, t.snapshots.to_string(), "snapshots");
    card(&mut s, bytes(t.raw), "held, as read");
    card(
        &mut s,
        bytes(t.stored),
        &format!("stored in {} packs", t.packs),
    );
    card(
        &mut s,
        if t.stored > 0 {
            format!("{:.1}×", t.raw as f64 / t.stored as f64)
        } else {
            "-".into()
        },
        "saved by dedup, deltas, zstd",
    );
    card(
        &mut s,
        t.newest
            .as_deref()
            .map(when)
            .unwrap_or_else(|| "none".into()),
        "newest backup",
    );
    s.push_str("</div></section>");

    // Per day: what was read, how it was saved, what it added.
    s.push_str(r#"<section id="days"><h2>Each day: read and stored</h2>"#);
    let read: Vec<Column> = r
        .days
        .iter()
        .map(|d| Column {
            label: d.date[5..].to_string(),
            title: format!(
                "{}: {} read: {} deduplicated, {} as deltas, {} new",
                d.date,
                bytes(d.raw),
                bytes(d.deduplicated),
                bytes(d.delta_raw),
                bytes(d.new_raw)
            ),
            segments: vec![
                ("new", d.new_raw),
                ("delta", d.delta_raw),
                ("dedup", d.deduplicated),
            ],
        })
        .collect();
    s.push_str(&legend(&[
        ("dedup", "#b8c4dc", "already stored (deduplicated)"),
        ("delta", "#7b61c9", "stored as deltas"),
        ("new", "#3867d6", "new, compressed whole"),
    ]));
    s.push_str(&svg::stacked("bytes read per day", &read));
    let added: Vec<Column> = r
        .days
        .iter()
        .map(|d| Column {
            label: d.date[5..].to_string(),
            title: format!(
                "{}: {} added: {} for deltas, {} for new chunks",
                d.date,
                bytes(d.added),
                bytes(d.delta_stored),
                bytes(d.new_stored)
            ),
            segments: vec![
                ("new", d.new_stored),
                ("delta", d.delta_stored),
                (
                    "overhead",
                    d.added.saturating_sub(d.new_stored + d.delta_stored),
                ),
            ],
        })
        .collect();
    s.push_str(r#"<p class="muted">…and what each day added to the repository:</p>"#);
    s.push_str(&svg::stacked("bytes added per day", &added));
    s.push_str(r#"<div class="scroll"><table><thead><tr><th>day</th><th class="n">snapshots</th><th class="n">read</th><th class="n">deduplicated</th><th class="n">deltas (read → stored)</th><th class="n">new (read → stored)</th><th class="n">added</th></tr></thead><tbody>"#);
    for d in r.days.iter().rev() {
        let _ = write!(
            s,
            r#"<tr class="day" data-date="{}" data-raw="{}" data-added="{}" data-deduplicated="{}"><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{} → {}</td><td class="n">{} → {}</td><td class="n">{}</td></tr>"#,
            d.date,
            d.raw,
            d.added,
            d.deduplicated,
            d.date,
            d.snapshots,
            bytes(d.raw),
            bytes(d.deduplicated),
            bytes(d.delta_raw),
            bytes(d.delta_stored),
            bytes(d.new_raw),
            bytes(d.new_stored),
            bytes(d.added)
        );
    }
    s.push_str("</tbody></table></div></section>");

    // Size over time.
    s.push_str(r#"<section id="size"><h2>Repository size over time</h2>"#);
    let pts: Vec<Point> = r
        .size_history
        .iter()
        .filter(|p| parses(&p.time))
        .map(|p| Point {
            t: seconds(&p.time),
            v: p.bytes as f64,
            title: format!(
                "{}: {}{}",
                when(&p.time),
                bytes(p.bytes),
                p.event
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            event: p.event.clone(),
        })
        .collect();
    if pts.is_empty() {
        s.push_str("<p class=\"muted\">No snapshot yet.</p>");
    } else {
        s.push_str(&legend(&[(
            "event",
            "#e67e22",
            "forget / prune freed space",
        )]));
        s.push_str(&svg::line("repository size", &pts, true));
    }
    s.push_str("</section>");

    // Timeline by tier.
    let lanes = ["daily", "named", "safety", "immaculate", "sacred"];
    s.push_str(r#"<section id="timeline"><h2>Snapshots by tier</h2>"#);
    let dots: Vec<Dot> = r
        .snapshots
        .iter()
        .filter(|x| parses(&x.time))
        .map(|x| Dot {
            t: seconds(&x.time),
            lane: lanes.iter().position(|l| *l == x.tier).unwrap_or(0),
            class: x.tier.clone(),
            title: format!(
                "{} {} ({}) {}, {} read, {} added",
                &x.id[..8],
                x.name,
                x.tier,
                when(&x.time),
                bytes(x.size),
                bytes(x.added)
            ),
        })
        .collect();
    s.push_str(&svg::timeline("snapshots by tier", &lanes, &dots));
    s.push_str(r#"<h2 style="margin-top:12px">Baselines</h2>"#);
    if r.baselines.is_empty() {
        s.push_str(r#"<p class="bad">No immaculate or sacred baseline: <code>relic snapshot --tier immaculate --name …</code></p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table><thead><tr><th>baseline</th><th>tier</th><th>taken</th><th class="n">age</th><th>restore with</th></tr></thead><tbody>"#);
        for b in &r.baselines {
            let cmds: Vec<String> = b
                .restore
                .iter()
                .map(|c| format!("<code>{}</code>", esc(c)))
                .collect();
            let _ = write!(
                s,
                r#"<tr class="baseline"><td>{} <span class="muted">{}</span></td><td>{}</td><td>{}</td><td class="n">{} days</td><td>{}</td></tr>"#,
                esc(&b.snapshot.name),
                &b.snapshot.id[..8],
                esc(&b.snapshot.tier),
                when(&b.snapshot.time),
                b.age_days,
                cmds.join("<br>")
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");

    // Databases.
    s.push_str(r#"<section id="databases"><h2>Databases</h2>"#);
    if r.databases.is_empty() {
        s.push_str(r#"<p class="muted">No database backed up.</p>"#);
    }
    for d in &r.databases {
        let _ = write!(s, r#"<h3 class="database">{}</h3>"#, esc(&d.name));
        let pts: Vec<Point> = d
            .points
            .iter()
            .filter(|p| parses(&p.time))
            .map(|p| Point {
                t: seconds(&p.time),
                v: p.rows as f64,
                title: format!(
                    "{}: {} rows, revision {}",
                    when(&p.time),
                    p.rows,
                    p.revision.as_deref().unwrap_or("-")
                ),
                event: None,
            })
            .collect();
        s.push_str(&svg::line("rows over time", &pts, false));
        let mut revs: Vec<(String, String)> = Vec::new();
        for p in &d.points {
            let rev = p.revision.clone().unwrap_or_else(|| "-".into());
            if revs.last().is_none_or(|(r, _)| *r != rev) {
                revs.push((rev, when(&p.time)));
            }
        }
        s.push_str(r#"<p>Alembic revision: "#);
        let rv: Vec<String> = revs
            .iter()
            .map(|(r, t)| format!("<code>{}</code> since {}", esc(r), esc(t)))
            .collect();
        s.push_str(&rv.join(" → "));
        s.push_str(r#"</p><div class="scroll"><table><thead><tr><th>table (grew most)</th><th class="n">rows first</th><th class="n">rows now</th><th class="n">change</th></tr></thead><tbody>"#);
        for g in &d.growth {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{:+}</td></tr>"#,
                esc(&g.table),
                g.first,
                g.last,
                g.last - g.first
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");

    // Images and their layers.
    s.push_str(r#"<section id="images"><h2>Images and shared layers</h2>"#);
    if r.layers.is_empty() {
        s.push_str(r#"<p class="muted">No image backed up.</p>"#);
    } else {
        let shared = r.layers.iter().filter(|l| l.images.len() > 1).count();
        let _ = write!(
            s,
            r#"<p>{} images, {} layers, {} of them shared by several images (each stored once).</p><div class="scroll"><table><thead><tr><th>layer</th><th class="n">days kept</th>"#,
            r.images.len(),
            r.layers.len(),
            shared
        );
        for i in &r.images {
            let _ = write!(s, r#"<th class="n">{}</th>"#, esc(i));
        }
        s.push_str("</tr></thead><tbody>");
        for l in &r.layers {
            let short = l.digest.trim_start_matches("sha256:");
            let _ = write!(
                s,
                r#"<tr class="layer"><td><code>{}</code></td><td class="n">{}</td>"#,
                esc(&short.chars().take(12).collect::<String>()),
                l.days
            );
            for i in &r.images {
                s.push_str(if l.images.contains(i) {
                    r#"<td class="n">●</td>"#
                } else {
                    r#"<td class="n"></td>"#
                });
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");

    // Checks, drills, copies.
    s.push_str(r#"<section id="checks"><h2>Restore drills and checks</h2><div class="scroll"><table><tbody>"#);
    let ev = |s: &mut String, label: &str, e: &Option<crate::runs::Event>, none: &str| match e {
        None => {
            let _ = write!(
                s,
                r#"<tr><td>{label}</td><td class="bad">{}</td><td></td></tr>"#,
                esc(none)
            );
        }
        Some(e) => {
            let _ = write!(
                s,
                r#"<tr><td>{label}</td><td class="{}">{} {}</td><td>{}</td></tr>"#,
                if e.ok { "ok" } else { "bad" },
                if e.ok { "passed" } else { "FAILED" },
                esc(&when(&e.time)),
                esc(&e.detail)
            );
        }
    };
    ev(
        &mut s,
        "last restore drill",
        &r.last_drill,
        "never (relic drill)",
    );
    ev(
        &mut s,
        "last data check (a slice)",
        &r.last_slice_check,
        "never (relic run with [check] read_data_subset)",
    );
    ev(
        &mut s,
        "last data check (every byte)",
        &r.last_data_check,
        "never (relic check --read-data)",
    );
    ev(&mut s, "last check", &r.last_check, "never (relic check)");
    s.push_str("</tbody></table></div></section>");

    s.push_str(r#"<section id="syncs"><h2>Off-site copies</h2>"#);
    if r.syncs.is_empty() {
        s.push_str(r#"<p class="bad">No off-site copy recorded (relic sync --to …).</p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table><thead><tr><th>destination</th><th>last sync</th><th>newest snapshot there</th><th class="n">behind</th></tr></thead><tbody>"#);
        for y in &r.syncs {
            let behind = match y.lag_hours {
                Some(h) if h < 1.0 => "current".to_string(),
                Some(h) => format!("{h:.0} h"),
                None if y.ever_ok => "unknown".to_string(),
                None => "never synced well".to_string(),
            };
            let late = !y.ok
                || !y.ever_ok
                || y.lag_hours
                    .is_some_and(|h| h > super::SYNC_LAG_HOURS as f64);
            let _ = write!(
                s,
                r#"<tr class="sync"><td>{}</td><td class="{}">{} {}</td><td>{}</td><td class="n {}">{}</td></tr>"#,
                esc(&y.destination),
                if y.ok { "ok" } else { "bad" },
                if y.ok { "ok" } else { "FAILED" },
                esc(&when(&y.last_sync)),
                esc(&y
                    .newest_there
                    .as_deref()
                    .map(when)
                    .unwrap_or_else(|| "-".into())),
                if late { "bad" } else { "ok" },
                esc(&behind)
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");
    s.push_str(r#"<p class="muted" style="text-align:center">relic report · every figure from snapshot objects, the index and local run records; no pack was read</p></main></body></html>"#);
    s
}
