//! The report's charts, drawn as inline SVG by hand: stacked bars, a line
//! with marked events, a timeline of dots. Each scales to its container
//! (a viewBox and `width: 100%`), so one drawing serves a desktop and a
//! phone; every mark carries a `<title>` with its exact figures.

use std::fmt::Write;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Bytes as people read them (KiB, MiB, GiB).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 84.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 10.0;

/// A "nice" top for an axis holding `max`.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= max {
            return m * p;
        }
    }
    10.0 * p
}

/// A nice top for bytes: a nice number of the largest binary unit that
/// fits, so the axis reads 1.0 MiB, not 976.6 KiB.
fn nice_bytes(max: f64) -> f64 {
    let mut unit = 1.0;
    while max / unit >= 1024.0 {
        unit *= 1024.0;
    }
    // 1000 of a unit reads better as one of the next.
    let top = nice(max / unit);
    if top >= 1000.0 {
        1024.0 * unit
    } else {
        top * unit
    }
}

fn open(s: &mut String, label: &str) {
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{}" class="chart">"#,
        esc(label)
    );
}

/// The y axis with three lines, labelled as bytes (or plain numbers).
fn y_axis(s: &mut String, top: f64, as_bytes: bool) {
    for i in 0..=2 {
        let v = top * i as f64 / 2.0;
        let y = H - BOTTOM - (H - BOTTOM - TOP) * i as f64 / 2.0;
        let label = if as_bytes {
            bytes(v as u64)
        } else {
            format!("{v:.0}")
        };
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{W}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 4.0,
            esc(&label)
        );
    }
}

/// One stacked bar per column: `segments` (class, value) from the bottom
/// up; `labels` under every few columns.
pub struct Column {
    pub label: String,
    pub title: String,
    pub segments: Vec<(&'static str, u64)>,
}

pub fn stacked(label: &str, cols: &[Column]) -> String {
    let mut s = String::new();
    open(&mut s, label);
    let max = cols
        .iter()
        .map(|c| c.segments.iter().map(|(_, v)| v).sum::<u64>())
        .max()
        .unwrap_or(0);
    let top = nice_bytes(max as f64);
    y_axis(&mut s, top, true);
    let n = cols.len().max(1) as f64;
    let slot = (W - LEFT) / n;
    let bar = (slot * 0.7).max(1.0);
    let every = (cols.len() / 10).max(1);
    for (i, c) in cols.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = H - BOTTOM;
        let _ = write!(s, "<g><title>{}</title>", esc(&c.title));
        for (class, v) in &c.segments {
            let h = (H - BOTTOM - TOP) * *v as f64 / top;
            y -= h;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" class="{class}"/>"#
            );
        }
        s.push_str("</g>");
        if i % every == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"#,
                x + bar / 2.0,
                H - 8.0,
                esc(&c.label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A line through `(t, value)` points over time (seconds), with a marked
/// dot and label where `event` is set.
pub struct Point {
    pub t: f64,
    pub v: f64,
    pub title: String,
    pub event: Option<String>,
}

pub fn line(label: &str, points: &[Point], as_bytes: bool) -> String {
    let mut s = String::new();
    open(&mut s, label);
    let max = points.iter().map(|p| p.v).fold(0.0, f64::max);
    let top = if as_bytes { nice_bytes(max) } else { nice(max) };
    y_axis(&mut s, top, as_bytes);
    let (t0, t1) = span(points.iter().map(|p| p.t));
    let xy = |p: &Point| {
        (
            LEFT + 6.0 + (W - LEFT - 12.0) * (p.t - t0) / (t1 - t0),
            H - BOTTOM - (H - BOTTOM - TOP) * p.v / top,
        )
    };
    let path: Vec<String> = points
        .iter()
        .map(|p| {
            let (x, y) = xy(p);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(s, r#"<polyline points="{}" class="line"/>"#, path.join(" "));
    for p in points {
        let (x, y) = xy(p);
        let class = if p.event.is_some() { "event" } else { "dot" };
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{}" class="{class}"><title>{}</title></circle>"#,
            if p.event.is_some() { 5 } else { 3 },
            esc(&p.title)
        );
        if let Some(e) = &p.event {
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" class="axis event-label" text-anchor="middle">{}</text>"#,
                (y - 9.0).max(TOP + 8.0),
                esc(e)
            );
        }
    }
    time_labels(&mut s, t0, t1, H - 8.0);
    s.push_str("</svg>");
    s
}

/// Dots on one row per lane, over time.
pub struct Dot {
    pub t: f64,
    pub lane: usize,
    pub class: String,
    pub title: String,
}

pub fn timeline(label: &str, lanes: &[&str], dots: &[Dot]) -> String {
    let h = 30.0 * lanes.len() as f64 + BOTTOM + TOP;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {W} {h}" role="img" aria-label="{}" class="chart">"#,
        esc(label)
    );
    for (i, l) in lanes.iter().enumerate() {
        let y = TOP + 15.0 + 30.0 * i as f64;
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{W}" y1="{y}" y2="{y}" class="grid"/><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 4.0,
            esc(l)
        );
    }
    let (t0, t1) = span(dots.iter().map(|d| d.t));
    for d in dots {
        let x = LEFT + 8.0 + (W - LEFT - 16.0) * (d.t - t0) / (t1 - t0);
        let y = TOP + 15.0 + 30.0 * d.lane as f64;
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="6" class="{}"><title>{}</title></circle>"#,
            esc(&d.class),
            esc(&d.title)
        );
    }
    time_labels(&mut s, t0, t1, h - 8.0);
    s.push_str("</svg>");
    s
}

fn span(ts: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = ts.fold((f64::MAX, f64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1.0 {
        return (lo - 43_200.0, hi + 43_200.0);
    }
    (lo, hi)
}

/// Dates under the first, middle and last of the span.
fn time_labels(s: &mut String, t0: f64, t1: f64, y: f64) {
    for (f, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let t = t0 + (t1 - t0) * f;
        let label = jiff::Timestamp::from_second(t as i64)
            .map(|ts| ts.strftime("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="{anchor}">{label}</text>"#,
            LEFT + (W - LEFT) * f,
            y
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_axes_are_nice() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.3e6), 1e7);
        assert_eq!(nice(2.2e6), 2.5e6);
        assert_eq!(nice_bytes(1_000_000.0), 1024.0 * 1024.0);
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn a_stacked_bar_per_column_with_its_figures() {
        let cols = vec![Column {
            label: "2026-01-01".into(),
            title: "raw 10 <x>".into(),
            segments: vec![("new", 6), ("dedup", 4)],
        }];
        let svg = stacked("per day", &cols);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("<title>raw 10 &lt;x&gt;</title>"));
    }
}
