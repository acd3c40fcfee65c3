//! Inline SVG charts for the HTML report, drawn here so the page needs no
//! script and no external resource: a line chart (series over a numeric x
//! axis, each series one `<polyline class="series">`) and a bar chart.

use std::fmt::Write;

/// Distinct, colour-blind-friendly series colours (Okabe–Ito, darkened blue first).
pub const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

const WIDTH: f64 = 920.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 45.0;

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

pub struct LineChart<'a> {
    pub id: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// Custom x ticks (value, label); `None`: evenly spaced numbers.
    pub x_ticks: Option<Vec<(f64, String)>>,
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * magnitude)
        .find(|bound| *bound >= value)
        .unwrap_or(10.0 * magnitude)
}

fn number(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

pub fn line_chart(chart: &LineChart<'_>) -> String {
    let scale = Scale::of(chart);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">"#,
        escape(chart.id)
    );
    axes(&mut svg, chart, &scale);
    for (i, series) in chart.series.iter().enumerate() {
        plot_series(&mut svg, i, series, &scale);
    }
    svg.push_str("</svg>");
    svg
}

/// From data to picture coordinates: x from its lowest (or 0) to its
/// highest value, y from 0 to a round number above the highest.
struct Scale {
    x_min: f64,
    x_max: f64,
    y_max: f64,
    plot_w: f64,
    plot_h: f64,
}

impl Scale {
    fn of(chart: &LineChart<'_>) -> Self {
        let xs = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let x_min = xs.clone().fold(f64::INFINITY, f64::min).min(0.0);
        let x_max = xs.fold(f64::NEG_INFINITY, f64::max).max(x_min + 1.0);
        let y_max = nice_ceiling(
            chart
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0, f64::max),
        );
        Scale {
            x_min,
            x_max,
            y_max,
            plot_w: WIDTH - LEFT - RIGHT,
            plot_h: HEIGHT - TOP - BOTTOM,
        }
    }

    fn x(&self, x: f64) -> f64 {
        LEFT + (x - self.x_min) / (self.x_max - self.x_min) * self.plot_w
    }

    fn y(&self, y: f64) -> f64 {
        TOP + self.plot_h - (y / self.y_max).clamp(0.0, 1.0) * self.plot_h
    }

    /// The chart's own ticks, or round steps about an eighth of the range.
    fn x_ticks(&self, chart: &LineChart<'_>) -> Vec<(f64, String)> {
        chart.x_ticks.clone().unwrap_or_else(|| {
            let step = nice_ceiling((self.x_max - self.x_min) / 8.0).max(1.0);
            let mut ticks = Vec::new();
            let mut x = (self.x_min / step).ceil() * step;
            while x <= self.x_max + 1e-9 {
                ticks.push((x, number(x)));
                x += step;
            }
            ticks
        })
    }
}

/// The plot area, the y grid, the x ticks and both axis labels.
fn axes(svg: &mut String, chart: &LineChart<'_>, scale: &Scale) {
    let Scale { plot_w, plot_h, .. } = *scale;
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>"##
    );
    for i in 0..=4 {
        let y = scale.y_max * f64::from(i) / 4.0;
        let py = scale.y(y);
        let _ = write!(
            svg,
            r##"<line class="grid" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            number(y)
        );
    }
    for (x, label) in scale.x_ticks(chart) {
        let px = scale.x(x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{}" y2="{}" stroke="#999"/><text x="{px:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 18.0,
            escape(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text><text x="14" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {})">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(chart.x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(chart.y_label)
    );
}

/// The `i`th series: its line and its legend entry (four to a row).
fn plot_series(svg: &mut String, i: usize, series: &Series, scale: &Scale) {
    let points: Vec<String> = series
        .points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", scale.x(*x), scale.y(*y)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline class="series" data-series="{}" fill="none" stroke="{}" stroke-width="3" stroke-linejoin="round" points="{}"/>"#,
        escape(&series.name),
        series.color,
        points.join(" ")
    );
    if series.points.len() <= 2 {
        // A polyline of one point draws nothing: mark the points.
        for (x, y) in &series.points {
            let _ = write!(
                svg,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="4" fill="{}"/>"#,
                scale.x(*x),
                scale.y(*y),
                series.color
            );
        }
    }
    let lx = LEFT + 10.0 + (i as f64 % 4.0) * 200.0;
    let ly = TOP + 14.0 + (i / 4) as f64 * 16.0;
    let _ = write!(
        svg,
        r#"<rect x="{lx}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{ly}" font-size="12">{}</text>"#,
        ly - 5.0,
        series.color,
        lx + 18.0,
        escape(&series.name)
    );
}

/// Vertical bars, one per (label, value).
pub fn bar_chart(id: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y_max = nice_ceiling(bars.iter().map(|b| b.1).fold(0.0, f64::max));
    let slot = plot_w / bars.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg id="{}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img"><rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>"##,
        escape(id)
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let py = TOP + plot_h - y / y_max * plot_h;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            LEFT - 6.0,
            py + 4.0,
            number(y)
        );
    }
    for (i, (label, value)) in bars.iter().enumerate() {
        let h = value / y_max * plot_h;
        let width = (slot * 0.6).min(120.0);
        let x = LEFT + i as f64 * slot + (slot - width) / 2.0;
        let _ = write!(
            svg,
            r#"<rect class="bar" data-label="{}" x="{x:.1}" y="{:.1}" width="{width:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{}" text-anchor="middle" font-size="12">{} ({})</text>"#,
            escape(label),
            TOP + plot_h - h,
            PALETTE[1],
            x + width / 2.0,
            TOP + plot_h + 18.0,
            escape(label),
            number(*value)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="14" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {})">{}</text></svg>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_bounds() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(450.0), 500.0);
    }

    #[test]
    fn one_polyline_per_series_and_escaped_names() {
        let svg = line_chart(&LineChart {
            id: "t",
            x_label: "s",
            y_label: "req/s",
            series: vec![
                Series {
                    name: "a<b".into(),
                    color: PALETTE[0],
                    points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)],
                },
                Series {
                    name: "b".into(),
                    color: PALETTE[1],
                    points: vec![(0.0, 5.0)],
                },
            ],
            x_ticks: None,
        });
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert_eq!(svg.matches(r#"class="point""#).count(), 1);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
    }
}
