//! `--plot`: a hand-written SVG of a run's per-second series, two panels sharing the time axis:
//! throughput (records/s) on top, latency (p50 and p99 per second, ms) below. Axes have ticks
//! and labels; a second without latency samples leaves a gap in the latency lines.

use std::fmt::Write as _;

use crate::stats::SeriesPoint;

/// Canvas size, px.
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 640.0;
/// Left edge and width of both panels' plot areas.
const PLOT_X: f64 = 90.0;
const PLOT_WIDTH: f64 = 840.0;
/// Top edge of each panel's plot area, and their common height.
const TOP_Y: f64 = 60.0;
const BOTTOM_Y: f64 = 360.0;
const PLOT_HEIGHT: f64 = 220.0;
/// Most intervals between ticks on an axis.
const TICKS: u32 = 5;
/// Shortest last (partial) second plotted, s: a shorter one is too short to be a rate.
const PARTIAL_SECOND_MIN_S: f64 = 0.2;

const THROUGHPUT_COLOUR: &str = "#1b7837";
const P50_COLOUR: &str = "#2166ac";
const P99_COLOUR: &str = "#b2182b";

/// The SVG document for `series` under `title`.
#[must_use]
pub fn plot(title: &str, series: &[SeriesPoint]) -> String {
    // A sliver of a last second is too short to be a rate: leave it out.
    let series: Vec<&SeriesPoint> =
        series.iter().filter(|p| p.duration_s >= PARTIAL_SECOND_MIN_S).collect();
    let end = series.iter().map(|p| p.second as f64 + p.duration_s).fold(1.0, f64::max);
    let x_axis = Axis::new(end);
    let x = |point: &SeriesPoint| {
        PLOT_X + (point.second as f64 + point.duration_s / 2.0) / x_axis.max * PLOT_WIDTH
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Throughput panel.
    let records_axis = Axis::new(series.iter().map(|p| p.records_per_s).fold(0.0, f64::max));
    axes(&mut svg, TOP_Y, &x_axis, &records_axis, "records/s");
    let points: Vec<(f64, f64)> =
        series.iter().map(|p| (x(p), y(TOP_Y, p.records_per_s, records_axis.max))).collect();
    line(&mut svg, "throughput", THROUGHPUT_COLOUR, &[points]);
    legend(&mut svg, TOP_Y, &[("records/s", THROUGHPUT_COLOUR)]);

    // Latency panel, ms.
    let ms = |us: Option<u64>| us.map(|us| us as f64 / 1e3);
    let latency_axis =
        Axis::new(series.iter().filter_map(|p| ms(p.p99_us).or(ms(p.p50_us))).fold(0.0, f64::max));
    axes(&mut svg, BOTTOM_Y, &x_axis, &latency_axis, "latency (ms)");
    for (id, colour, pick) in [
        ("p50", P50_COLOUR, (|p: &SeriesPoint| p.p50_us) as fn(&SeriesPoint) -> Option<u64>),
        ("p99", P99_COLOUR, |p: &SeriesPoint| p.p99_us),
    ] {
        // Consecutive seconds with a value form one run of the line; a gap splits it.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut previous: Option<u64> = None;
        for point in &series {
            let Some(value) = ms(pick(point)) else {
                previous = None;
                continue;
            };
            let xy = (x(point), y(BOTTOM_Y, value, latency_axis.max));
            match (previous, runs.last_mut()) {
                (Some(second), Some(run)) if second + 1 == point.second => run.push(xy),
                _ => runs.push(vec![xy]),
            }
            previous = Some(point.second);
        }
        line(&mut svg, id, colour, &runs);
    }
    legend(&mut svg, BOTTOM_Y, &[("p50", P50_COLOUR), ("p99", P99_COLOUR)]);

    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
        PLOT_X + PLOT_WIDTH / 2.0,
        BOTTOM_Y + PLOT_HEIGHT + 42.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// An axis from 0: its top and the distance between ticks, both round numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    /// The value at the top (or right) end.
    pub max: f64,
    /// Between two ticks.
    pub step: f64,
}

impl Axis {
    /// The axis for values up to `value`: a step of 1, 2, 2.5 or 5 times a power of ten giving
    /// at most [`TICKS`] intervals, and the first multiple of it at or above `value`.
    #[must_use]
    pub fn new(value: f64) -> Axis {
        let step = nice_ceiling(value / f64::from(TICKS));
        let max = ((value / step) - 1e-9).ceil().max(1.0) * step;
        Axis { max, step }
    }

    /// The tick values, from 0 to `max`.
    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = (self.max / self.step).round() as u32;
        (0..=count).map(|tick| f64::from(tick) * self.step)
    }
}

/// The y coordinate of `value` in the panel whose plot area starts at `top`.
fn y(top: f64, value: f64, max: f64) -> f64 {
    top + PLOT_HEIGHT - value / max * PLOT_HEIGHT
}

/// A panel's frame, grid, tick labels and y-axis label.
fn axes(svg: &mut String, top: f64, x_axis: &Axis, y_axis: &Axis, y_label: &str) {
    let bottom = top + PLOT_HEIGHT;
    let right = PLOT_X + PLOT_WIDTH;
    let _ = writeln!(
        svg,
        r##"<rect x="{PLOT_X}" y="{top}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="none" stroke="#444"/>"##
    );
    for value in y_axis.ticks() {
        let ty = y(top, value, y_axis.max);
        let _ = writeln!(
            svg,
            r##"<line x1="{PLOT_X}" y1="{ty:.1}" x2="{right}" y2="{ty:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            PLOT_X - 6.0,
            ty + 4.0,
            format_tick(value)
        );
    }
    for value in x_axis.ticks() {
        let tx = PLOT_X + value / x_axis.max * PLOT_WIDTH;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{bottom}" x2="{tx:.1}" y2="{}" stroke="#444"/>"##,
            bottom + 5.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{tx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            format_tick(value)
        );
    }
    let label_y = top + PLOT_HEIGHT / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{label_y}" text-anchor="middle" transform="rotate(-90 20 {label_y})">{}</text>"#,
        escape(y_label)
    );
}

/// One series as a path: each run of points is a separate subpath (`M` then `L`s).
fn line(svg: &mut String, id: &str, colour: &str, runs: &[Vec<(f64, f64)>]) {
    let mut d = String::new();
    for run in runs.iter().filter(|run| !run.is_empty()) {
        for (index, (px, py)) in run.iter().enumerate() {
            let command = if index == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{command}{px:.1},{py:.1} ");
        }
    }
    let _ = writeln!(
        svg,
        r#"<path id="{id}" d="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
        d.trim_end()
    );
    // A lone point has no length: mark every point so single seconds stay visible.
    for (px, py) in runs.iter().flatten() {
        let _ = writeln!(svg, r#"<circle cx="{px:.1}" cy="{py:.1}" r="2" fill="{colour}"/>"#);
    }
}

/// Colour keys at the top right of a panel.
fn legend(svg: &mut String, top: f64, entries: &[(&str, &str)]) {
    let mut x = PLOT_X + PLOT_WIDTH - 80.0 * entries.len() as f64;
    for (name, colour) in entries {
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="14" height="4" fill="{colour}"/>"#,
            top - 12.0
        );
        let _ =
            writeln!(svg, r#"<text x="{}" y="{}">{}</text>"#, x + 18.0, top - 6.0, escape(name));
        x += 80.0;
    }
}

/// The smallest 1, 2, 2.5 or 5 times a power of ten that is >= `value` (1 for 0 or less).
#[must_use]
pub fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: `250k`, `1.5M`, `0.25`, `40`.
#[must_use]
pub fn format_tick(value: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    };
    if value >= 1e6 {
        format!("{}M", trim(format!("{:.2}", value / 1e6)))
    } else if value >= 1e3 {
        format!("{}k", trim(format!("{:.2}", value / 1e3)))
    } else {
        trim(format!("{value:.2}"))
    }
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(second: u64, records: u64, p50_us: Option<u64>, p99_us: Option<u64>) -> SeriesPoint {
        SeriesPoint {
            second,
            duration_s: 1.0,
            records,
            bytes: records * 1024,
            records_per_s: records as f64,
            mb_per_s: records as f64 * 1024.0 / 1e6,
            p50_us,
            p99_us,
            rss_bytes: None,
        }
    }

    /// Checks that every tag is closed in order (a small well-formedness check: no attribute
    /// contains `<` or `>` once escaped) and returns the element names in document order.
    fn elements(svg: &str) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let name = tag.split_whitespace().next().expect("tag name").trim_end_matches('/');
                names.push(name.to_owned());
                if !tag.ends_with('/') {
                    open.push(name.to_owned());
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed elements: {open:?}");
        names
    }

    /// The `d` attribute of the path with `id`.
    fn path<'a>(svg: &'a str, id: &str) -> &'a str {
        let start = svg.find(&format!(r#"<path id="{id}" d=""#)).expect("path") + id.len() + 15;
        &svg[start..start + svg[start..].find('"').expect("end of d")]
    }

    #[test]
    fn plot_is_well_formed_and_holds_every_series() {
        let series = vec![
            point(0, 1000, Some(1_000), Some(4_000)),
            point(1, 2000, Some(1_500), Some(6_000)),
            point(2, 0, None, None),
            point(3, 1800, Some(1_200), Some(5_000)),
        ];
        let svg = plot("produce <4 producers> & acks=all", &series);
        let names = elements(&svg);
        assert_eq!(names[0], "svg");
        assert!(svg.contains("produce &lt;4 producers&gt; &amp; acks=all"));
        for label in ["records/s", "latency (ms)", "time (s)", "p50", "p99"] {
            assert!(svg.contains(&format!(">{label}<")), "missing label {label}");
        }
        // Throughput: one point per second, zeros included.
        let throughput = path(&svg, "throughput");
        assert_eq!(throughput.matches('M').count(), 1);
        assert_eq!(throughput.matches('L').count(), 3);
        // Latency: the empty second splits the lines into two runs.
        for id in ["p50", "p99"] {
            let d = path(&svg, id);
            assert_eq!(d.matches('M').count(), 2, "{id}: {d}");
            assert_eq!(d.matches('L').count(), 1, "{id}: {d}");
        }
        // Axis maxima: 2000 records/s and 6 ms are round already; x spans 4 seconds.
        assert!(svg.contains(">2k<") && svg.contains(">6<") && svg.contains(">4<"), "{svg}");
        assert!(!svg.contains(">2.5k<") && !svg.contains(">5<"), "{svg}");
    }

    #[test]
    fn an_empty_series_still_draws_the_axes() {
        let svg = plot("nothing", &[]);
        elements(&svg);
        assert_eq!(path(&svg, "throughput"), "");
    }

    #[test]
    fn axes_end_at_the_first_round_step_above_the_data() {
        assert_eq!(Axis::new(11.0), Axis { max: 12.5, step: 2.5 });
        assert_eq!(Axis::new(535_000.0), Axis { max: 600_000.0, step: 200_000.0 });
        assert_eq!(Axis::new(2000.0), Axis { max: 2000.0, step: 500.0 });
        assert_eq!(Axis::new(0.0), Axis { max: 1.0, step: 1.0 });
        let ticks: Vec<f64> = Axis::new(4.0).ticks().collect();
        assert_eq!(ticks, [0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn a_sliver_of_a_last_second_is_not_plotted() {
        let mut last = point(2, 3, Some(1_000), Some(2_000));
        last.duration_s = 0.01;
        last.records_per_s = 300.0;
        let svg = plot("t", &[point(0, 1000, None, None), point(1, 1000, None, None), last]);
        assert_eq!(path(&svg, "throughput").matches('L').count(), 1);
        assert_eq!(path(&svg, "p50"), "");
    }

    #[test]
    fn nice_ceilings_and_ticks() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(2001.0), 2500.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(250_000.0), "250k");
        assert_eq!(format_tick(1_500_000.0), "1.5M");
    }
}
