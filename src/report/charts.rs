//! The report's charts, drawn by plotters' SVG backend into strings. Each
//! returns a whole `<svg>` element with `role="img"` and a `<title>` (its
//! text alternative; the page puts a table of the same numbers beside it).
//! Colours come from `PALETTE` (Okabe–Ito); text sizes are in SVG units,
//! the charts scale with the page.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{short, PALETTE};
use crate::ml::diagnostics::share;

/// The charts' drawing size, in SVG units.
pub const WIDTH: u32 = 680;
pub const HEIGHT: u32 = 320;
const FONT: &str = "sans-serif";
const LABEL_SIZE: u32 = 15;
const DESC_SIZE: u32 = 16;

/// A drawn chart, or why it could not be drawn.
pub type Drawn = Result<String, String>;

pub fn colour(k: usize) -> RGBColor {
    let (r, g, b) = PALETTE[k % (PALETTE.len() - 1)];
    RGBColor(r, g, b)
}

const BLACK_LINE: RGBColor = RGBColor(0, 0, 0);
const GREY: RGBColor = RGBColor(0xB0, 0xB0, 0xB0);
const VERMILLION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
const SKY: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
const ORANGE: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
const GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);

/// Draws on a fresh white canvas of `size` and finishes the SVG with its
/// title.
fn draw(
    title: &str,
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Drawn {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        paint(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    // plotters writes `<svg width=.. height=.. viewBox=..>` then a newline;
    // the title goes first inside it, escaped by maud.
    let title = maud::html! { title { (title) } }.into_string();
    let open = svg.find(">\n").ok_or("plotters wrote no <svg> element")? + 2;
    svg.insert_str(open, &title);
    // Never drawn wider than made (a small chart would blow up its text).
    let open = format!(
        "<svg role=\"img\" class=\"chart\" style=\"max-width: {}px\" ",
        size.0
    );
    Ok(svg.replacen("<svg ", &open, 1))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// How an entry of a chart's key is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
    Ring(RGBColor),
    Block(RGBColor),
}

/// The width of the strip a key takes, right of its chart.
const KEY_WIDTH: u32 = 190;

/// Draws `entries` as a key in a strip on the right of `root`, where it
/// cannot cover any data, and returns the rest for the chart.
fn with_key<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    entries: &[(String, Mark)],
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, String> {
    let (width, _) = root.dim_in_pixel();
    let (plot, strip) = root.split_horizontally(width.saturating_sub(KEY_WIDTH));
    let text = (FONT, LABEL_SIZE - 1)
        .into_font()
        .color(&BLACK_LINE)
        .pos(Pos::new(HPos::Left, VPos::Center));
    // As many entries as the strip holds; the last says how many more.
    let (_, height) = strip.dim_in_pixel();
    let room = ((height.saturating_sub(28)) / 22).max(1) as usize;
    let more = entries.len().saturating_sub(room);
    let shown = if more > 0 { room - 1 } else { entries.len() };
    let rest = (more > 0).then(|| (format!("… {} more", more + 1), Mark::Line(WHITE)));
    for (k, (label, mark)) in entries.iter().take(shown).chain(rest.iter()).enumerate() {
        let y = 28 + 22 * k as i32;
        let swatch: DynElement<'static, SVGBackend<'a>, (i32, i32)> = match *mark {
            Mark::Line(c) => PathElement::new(vec![(6, y), (28, y)], c.stroke_width(3)).into_dyn(),
            Mark::Dashed(c) => {
                DashedPathElement::new(vec![(6, y), (28, y)], 5, 3, c.stroke_width(2)).into_dyn()
            }
            Mark::Dot(c) => Circle::new((17, y), 5, c.filled()).into_dyn(),
            Mark::Ring(c) => Circle::new((17, y), 6, c.stroke_width(3)).into_dyn(),
            Mark::Block(c) => Rectangle::new([(10, y - 6), (24, y + 6)], c.filled()).into_dyn(),
        };
        strip.draw(&swatch).map_err(err)?;
        strip
            .draw(&Text::new(cut(label, 20), (36, y), text.clone()))
            .map_err(err)?;
    }
    Ok(plot)
}

/// A linear axis over some values, drawn in their own units when plotters
/// can step through them: else (a range narrower than 1e-9, or than a
/// millionth of its magnitude, where plotters' ticks number in the millions
/// or never end, and no interrupt reaches it) in units of the range, 0 to 1,
/// labelled back in theirs. Every coordinate goes through `at`, which also
/// keeps it on the axis (plotters' pixel arithmetic overflows on a point far
/// outside).
#[derive(Clone, Copy, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    scaled: bool,
}

impl Axis {
    /// Over the finite `values`, with 8 % of room each side, or
    /// `room_if_equal` when they are all equal; 0 to 1 when there are none.
    fn over(values: impl Iterator<Item = f64>, room_if_equal: f64) -> Result<Axis, String> {
        let (lo, hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if !lo.is_finite() {
            return Ok(Axis::fixed(0.0, 1.0));
        }
        // Halves first: hi − lo itself may not be a finite number.
        let room = if hi > lo {
            (hi / 2.0 - lo / 2.0) * 0.16
        } else {
            room_if_equal
        };
        let (lo, hi) = (lo - room, hi + room);
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(format!("its values ({lo} to {hi}) are too large to draw"));
        }
        let width = hi - lo;
        let magnitude = lo.abs().max(hi.abs());
        let natural = width.is_finite() && width >= 1e-9 && width > magnitude * 1e-6;
        Ok(Axis {
            lo,
            hi,
            scaled: !natural,
        })
    }

    /// A range the caller knows plotters can step through (0 to 1).
    fn fixed(lo: f64, hi: f64) -> Axis {
        Axis {
            lo,
            hi,
            scaled: false,
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        if self.scaled {
            0.0..1.0
        } else {
            self.lo..self.hi
        }
    }

    /// Where `v` is drawn: on the axis, NaN at its start.
    fn at(&self, v: f64) -> f64 {
        if v.is_nan() {
            self.range().start
        } else if self.scaled {
            share(v, self.lo, self.hi)
        } else {
            v.clamp(self.lo, self.hi)
        }
    }

    /// The value drawn at `u`, for a tick's label.
    fn value(&self, u: f64) -> f64 {
        if self.scaled {
            self.lo * (1.0 - u) + self.hi * u
        } else {
            u
        }
    }

    /// The range's width, for choosing how times are labelled.
    fn span(&self) -> f64 {
        (self.hi / 2.0 - self.lo / 2.0) * 2.0
    }
}

/// Room around a single point in time: a minute each side.
const MINUTE: f64 = 60.0;

/// Room around a single value: a tenth of it, at least 0.1.
fn tenth(values: &[f64]) -> f64 {
    values
        .iter()
        .find(|v| v.is_finite())
        .map_or(0.1, |v| v.abs().max(1.0) * 0.1)
}

/// `v` inside `range` (NaN at its start), on a log axis.
fn within(range: &std::ops::Range<f64>, v: f64) -> f64 {
    if v.is_nan() {
        range.start
    } else {
        v.clamp(range.start, range.end)
    }
}

/// `range` if a log axis can be drawn over it: finite, with a finite,
/// positive width, at least a millionth of its magnitude (plotters loops for
/// ever over an infinite one).
fn drawable(range: std::ops::Range<f64>) -> Result<std::ops::Range<f64>, String> {
    let width = range.end - range.start;
    let magnitude = range.start.abs().max(range.end.abs());
    if range.start.is_finite()
        && range.end.is_finite()
        && width.is_finite()
        && width > magnitude * 1e-6
    {
        Ok(range)
    } else {
        Err(format!(
            "its values ({} to {}) are too large or too close to draw",
            range.start, range.end
        ))
    }
}

/// Labels the epoch seconds an axis draws at `u` as dates, or times within
/// a day.
fn time_label(axis: Axis) -> impl Fn(&f64) -> String {
    let span = axis.span();
    move |&u: &f64| {
        let t = axis.value(u);
        let Ok(at) = jiff::Timestamp::from_second(t as i64) else {
            return String::new();
        };
        let format = if span < 600.0 {
            "%H:%M:%S"
        } else if span < 2.0 * 86_400.0 {
            "%H:%M"
        } else {
            "%b %d"
        };
        at.strftime(format).to_string()
    }
}

/// Cuts a label to `max` characters, with an ellipsis.
pub fn cut(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let kept: String = label.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

/// The label area for names of up to `max_chars` characters.
fn name_area(names: impl Iterator<Item = usize>) -> u32 {
    let longest = names.max().unwrap_or(4).min(24) as u32;
    (longest * 9 + 16).max(60)
}

/// One point per model version: score against when it was trained, the
/// deployed ones filled, the live one ringed, a line from each retrain to
/// its parent.
pub struct VersionPoint {
    pub at: f64,
    pub score: f64,
    pub version: i64,
    pub deployed: bool,
    pub live: bool,
    /// (at, score) of the parent.
    pub parent: Option<(f64, f64)>,
}

pub fn versions(title: &str, metric: &str, points: &[VersionPoint]) -> Drawn {
    // A score that is not a number has no place on the chart (the table
    // beside it lists every version).
    let points: Vec<&VersionPoint> = points
        .iter()
        .filter(|p| p.at.is_finite() && p.score.is_finite())
        .collect();
    let x = Axis::over(points.iter().map(|p| p.at), MINUTE)?;
    let scores: Vec<f64> = points.iter().map(|p| p.score).collect();
    let y = Axis::over(scores.iter().copied(), tenth(&scores))?;
    let at = |t: f64, v: f64| (x.at(t), y.at(v));
    let key = [
        ("trained".to_string(), Mark::Ring(SKY)),
        ("deployed once".to_string(), Mark::Dot(ORANGE)),
        ("live".to_string(), Mark::Ring(VERMILLION)),
        ("retrained from".to_string(), Mark::Line(GREY)),
    ];
    draw(title, (WIDTH + KEY_WIDTH, HEIGHT), |root| {
        let plot = with_key(root, &key)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x.range(), y.range())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&time_label(x))
            .y_label_formatter(&|u| short(y.value(*u)))
            .x_desc("trained (UTC)")
            .y_desc(format!("{metric} on its test rows"))
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(points.iter().filter_map(|p| {
                p.parent
                    .filter(|(at, score)| at.is_finite() && score.is_finite())
                    .map(|(t, v)| PathElement::new(vec![at(t, v), at(p.at, p.score)], GREY))
            }))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| !p.deployed)
                    .map(|p| Circle::new(at(p.at, p.score), 4, SKY.stroke_width(2))),
            )
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.deployed)
                    .map(|p| Circle::new(at(p.at, p.score), 5, ORANGE.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.live)
                    .map(|p| Circle::new(at(p.at, p.score), 9, VERMILLION.stroke_width(3))),
            )
            .map_err(err)?;
        chart
            .draw_series(points.iter().filter(|p| p.live).map(|p| {
                EmptyElement::at(at(p.at, p.score))
                    + Text::new(
                        format!("live v{}", p.version),
                        (12, -22),
                        (FONT, LABEL_SIZE).into_font().color(&BLACK_LINE),
                    )
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// Events on lanes over time.
pub struct Event {
    pub at: f64,
    pub lane: usize,
}

pub fn timeline(title: &str, lanes: &[&str], start: f64, end: f64, events: &[Event]) -> Drawn {
    let time = Axis::over([start, end].into_iter(), MINUTE)?;
    // An event's mark: 0.6 % of the axis wide.
    let half = 0.003 * (time.range().end - time.range().start);
    let height = 60 + 34 * lanes.len() as u32;
    draw(title, (WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(name_area(lanes.iter().map(|l| l.chars().count())))
            .build_cartesian_2d(time.range(), -0.5..lanes.len() as f64 - 0.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(lanes.len() + 1)
            .disable_y_mesh()
            .x_label_formatter(&time_label(time))
            .y_label_formatter(&|v| {
                let k = v.round();
                if (v - k).abs() < 1e-6 && k >= 0.0 {
                    lanes
                        .get(k as usize)
                        .map_or(String::new(), |l| l.to_string())
                } else {
                    String::new()
                }
            })
            .x_desc("when (UTC)")
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(events.iter().map(|e| {
                let c = colour(e.lane);
                let at = time.at(e.at);
                Rectangle::new(
                    [
                        (at - half, e.lane as f64 - 0.3),
                        (at + half, e.lane as f64 + 0.3),
                    ],
                    c.filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// Lines over time, one per named series, with horizontal reference lines.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn in colour (else in grey, behind).
    pub highlighted: bool,
}

pub struct Reference {
    pub value: f64,
    pub name: String,
}

pub struct LinesOverTime<'a> {
    pub title: &'a str,
    pub y_desc: &'a str,
    pub series: &'a [Series],
    pub references: &'a [Reference],
    /// A log scale on y (p-values); values are floored at 1e-12.
    pub log: bool,
}

pub fn lines_over_time(spec: &LinesOverTime<'_>) -> Drawn {
    let all = || {
        spec.series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let x = Axis::over(all().map(|p| p.0), MINUTE)?;
    let draw_lines = |root: &DrawingArea<SVGBackend<'_>, Shift>| -> Result<(), String> {
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70);
        let floor = 1e-12;
        if spec.log {
            let lo = all()
                .map(|p| p.1)
                .chain(spec.references.iter().map(|r| r.value))
                .fold(1.0f64, |lo, v| lo.min(v.max(floor)))
                / 2.0;
            let y = drawable(lo..1.5)?;
            let mut chart = builder
                .build_cartesian_2d(x.range(), y.clone().log_scale())
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&time_label(x))
                .y_label_formatter(&|v| short(*v))
                .x_desc("run (UTC)")
                .y_desc(spec.y_desc)
                .label_style((FONT, LABEL_SIZE))
                .axis_desc_style((FONT, DESC_SIZE))
                .light_line_style(TRANSPARENT)
                .draw()
                .map_err(err)?;
            plot(&mut chart, spec, x, |v| within(&y, v.max(floor)))
        } else {
            let values: Vec<f64> = all()
                .map(|p| p.1)
                .chain(spec.references.iter().map(|r| r.value))
                .collect();
            let y = Axis::over(values.iter().copied(), tenth(&values))?;
            let mut chart = builder
                .build_cartesian_2d(x.range(), y.range())
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&time_label(x))
                .y_label_formatter(&|u| short(y.value(*u)))
                .x_desc("run (UTC)")
                .y_desc(spec.y_desc)
                .label_style((FONT, LABEL_SIZE))
                .axis_desc_style((FONT, DESC_SIZE))
                .light_line_style(TRANSPARENT)
                .draw()
                .map_err(err)?;
            plot(&mut chart, spec, x, |v| y.at(v))
        }
    };
    let mut key: Vec<(String, Mark)> = spec
        .series
        .iter()
        .filter(|s| s.highlighted)
        .enumerate()
        .map(|(k, s)| (s.name.clone(), Mark::Line(colour(k))))
        .collect();
    if spec.series.iter().any(|s| !s.highlighted) {
        key.push(("the others".to_string(), Mark::Line(GREY)));
    }
    key.extend(
        spec.references
            .iter()
            .map(|r| (r.name.clone(), Mark::Dashed(BLACK_LINE))),
    );
    draw(spec.title, (WIDTH + KEY_WIDTH, HEIGHT), |root| {
        draw_lines(&with_key(root, &key)?)
    })
}

/// Draws the series and references of `spec` on `chart`, with `on_y`
/// placing a value on its y axis.
fn plot<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    spec: &LinesOverTime<'_>,
    x: Axis,
    on_y: impl Fn(f64) -> f64,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let shown = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(t, v)| (x.at(t), on_y(v)))
            .collect()
    };
    for s in spec.series.iter().filter(|s| !s.highlighted) {
        chart
            .draw_series(LineSeries::new(shown(&s.points), GREY))
            .map_err(err)?;
    }
    for (k, s) in spec.series.iter().filter(|s| s.highlighted).enumerate() {
        let c = colour(k);
        let points = shown(&s.points);
        if points.len() == 1 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(err)?;
    }
    for r in spec.references.iter().filter(|r| r.value.is_finite()) {
        let value = on_y(r.value);
        let ends = x.range();
        chart
            .draw_series(DashedLineSeries::new(
                [(ends.start, value), (ends.end, value)],
                8,
                5,
                BLACK_LINE.stroke_width(1),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// Bars in pairs: training share and recent share per bin.
pub fn distribution(title: &str, bins: &[(String, f64, f64)]) -> Drawn {
    let top = bins
        .iter()
        .map(|b| b.1.max(b.2))
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.5;
    let shares = Axis::over([0.0, top].into_iter(), 0.1)?;
    let n = bins.len().max(1);
    let key = [
        ("training snapshot".to_string(), Mark::Block(BLUE)),
        ("recent rows".to_string(), Mark::Block(ORANGE)),
    ];
    draw(title, (WIDTH + KEY_WIDTH, HEIGHT), |root| {
        let plot = with_key(root, &key)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(64)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, shares.range())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(12) + 1)
            .x_label_formatter(&|v| {
                let k = v.round();
                if (v - k).abs() < 1e-6 && k >= 0.0 {
                    bins.get(k as usize).map_or(String::new(), |b| cut(&b.0, 9))
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|u| format!("{:.0} %", shares.value(*u) * 100.0))
            .x_desc("bin (training deciles, or category)")
            .y_desc("share of rows")
            .label_style((FONT, LABEL_SIZE - 3))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bins.iter().enumerate().map(|(k, b)| {
                Rectangle::new(
                    [(k as f64 - 0.4, shares.at(0.0)), (k as f64, shares.at(b.1))],
                    BLUE.filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(bins.iter().enumerate().map(|(k, b)| {
                Rectangle::new(
                    [(k as f64, shares.at(0.0)), (k as f64 + 0.4, shares.at(b.2))],
                    ORANGE.filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// A heat map of counts, true class down, predicted class across.
pub fn confusion(title: &str, labels: &[String], counts: &[Vec<u64>]) -> Drawn {
    let k = labels.len().max(1);
    // A k × k matrix, whatever was stored.
    let counts: Vec<&[u64]> = counts
        .iter()
        .take(k)
        .map(|row| &row[..row.len().min(k)])
        .collect();
    let most = counts
        .iter()
        .flat_map(|r| r.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let side = (HEIGHT + 60).min(80 + 60 * k as u32).max(260);
    let area = name_area(labels.iter().map(|l| cut(l, 12).chars().count()));
    draw(title, (area + side + 40, side + 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(54)
            .y_label_area_size(area)
            .build_cartesian_2d(-0.5..k as f64 - 0.5, -0.5..k as f64 - 0.5)
            .map_err(err)?;
        let name = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).map_or(String::new(), |l| cut(l, 12))
            } else {
                String::new()
            }
        };
        // Rows top to bottom in class order: row t is drawn at k-1-t.
        let row_name = |v: &f64| name(&(k as f64 - 1.0 - v));
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k.min(12) + 1)
            .y_labels(k.min(20) + 1)
            .x_label_formatter(&name)
            .y_label_formatter(&row_name)
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .draw()
            .map_err(err)?;
        let cells = counts.iter().enumerate().flat_map(|(t, row)| {
            row.iter()
                .enumerate()
                .map(move |(p, &c)| (t, p, c as f64 / most))
        });
        chart
            .draw_series(cells.clone().map(|(t, p, share)| {
                // From white to the palette's blue.
                let mix = |to: u8| (255.0 - (255.0 - f64::from(to)) * share) as u8;
                let y = (k - 1 - t) as f64;
                Rectangle::new(
                    [(p as f64 - 0.5, y - 0.5), (p as f64 + 0.5, y + 0.5)],
                    RGBColor(mix(0x00), mix(0x72), mix(0xB2)).filled(),
                )
            }))
            .map_err(err)?;
        if k <= 12 {
            chart
                .draw_series(counts.iter().enumerate().flat_map(|(t, row)| {
                    row.iter().enumerate().map(move |(p, &c)| {
                        let dark = c as f64 / most > 0.5;
                        Text::new(
                            c.to_string(),
                            (p as f64 - 0.1, (k - 1 - t) as f64),
                            (FONT, LABEL_SIZE).into_font().color(if dark {
                                &WHITE
                            } else {
                                &BLACK_LINE
                            }),
                        )
                    })
                }))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Predicted probability against observed frequency, with the diagonal.
pub fn calibration(title: &str, of: &str, bins: &[(f64, f64, u64)]) -> Drawn {
    let unit = Axis::fixed(0.0, 1.0);
    let bins: Vec<(f64, f64)> = bins
        .iter()
        .filter(|b| b.0.is_finite() && b.1.is_finite())
        .map(|b| (unit.at(b.0), unit.at(b.1)))
        .collect();
    let key = [
        ("perfectly calibrated".to_string(), Mark::Dashed(GREY)),
        ("model".to_string(), Mark::Line(BLUE)),
    ];
    draw(title, (WIDTH + KEY_WIDTH, HEIGHT + 40), |root| {
        let plot = with_key(root, &key)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{:.0} %", v * 100.0))
            .y_label_formatter(&|v| format!("{:.0} %", v * 100.0))
            .x_desc(format!("mean predicted: {}", cut(of, 40)))
            .y_desc("observed share")
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                8,
                5,
                GREY.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(bins.iter().copied(), BLUE.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(bins.iter().map(|&b| Circle::new(b, 4, BLUE.filled())))
            .map_err(err)?;
        Ok(())
    })
}

/// Actual against predicted as test-row counts on a grid (darker: more
/// rows), with the line where they agree.
pub struct Grid<'a> {
    pub lo: f64,
    pub hi: f64,
    pub steps: usize,
    /// (predicted step, actual step, rows).
    pub cells: &'a [(usize, usize, u64)],
}

pub fn residuals(title: &str, target: &str, grid: &Grid<'_>) -> Drawn {
    let axis = Axis::over([grid.lo, grid.hi].into_iter(), tenth(&[grid.lo]))?;
    let ends = axis.range();
    let steps = grid.steps.max(1);
    // Step k's value, without overflow however far apart lo and hi are.
    let step = |k: usize| {
        let t = k.min(steps) as f64 / steps as f64;
        axis.at(grid.lo * (1.0 - t) + grid.hi * t)
    };
    let most = grid.cells.iter().map(|c| c.2).max().unwrap_or(1).max(1) as f64;
    draw(title, (WIDTH, HEIGHT + 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(ends.clone(), ends.clone())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|u| short(axis.value(*u)))
            .y_label_formatter(&|u| short(axis.value(*u)))
            .x_desc(format!("predicted {}", cut(target, 30)))
            .y_desc(format!("actual {}", cut(target, 30)))
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(grid.cells.iter().map(|&(p, a, n)| {
                // From light to the palette's blue; a single row still shows.
                let share = 0.15 + 0.85 * (n as f64 / most).sqrt();
                let mix = |to: u8| (255.0 - (255.0 - f64::from(to)) * share) as u8;
                Rectangle::new(
                    [(step(p), step(a)), (step(p + 1), step(a + 1))],
                    RGBColor(mix(0x00), mix(0x72), mix(0xB2)).filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(ends.start, ends.start), (ends.end, ends.end)],
                8,
                5,
                VERMILLION.stroke_width(1),
            ))
            .map_err(err)?;
        Ok(())
    })
}

/// Horizontal bars, one per name, largest first; negative values go left.
pub fn bars(title: &str, x_desc: &str, items: &[(String, f64)]) -> Drawn {
    let rows: Vec<Bar> = items
        .iter()
        .map(|(name, v)| Bar {
            name: name.clone(),
            from: 0.0,
            to: *v,
            colour: if *v >= 0.0 { BLUE } else { VERMILLION },
        })
        .collect();
    horizontal_bars(title, x_desc, &rows)
}

/// A waterfall: from the bias, each contribution in turn, to the
/// prediction; rises in blue, falls in vermillion.
pub fn waterfall(title: &str, explains: &str, bias: f64, steps: &[(String, f64)]) -> Drawn {
    let mut level = bias;
    let mut rows = vec![Bar {
        name: "(bias)".to_string(),
        from: 0.0,
        to: bias,
        colour: GREY,
    }];
    for (name, c) in steps {
        rows.push(Bar {
            name: name.clone(),
            from: level,
            to: level + c,
            colour: if *c >= 0.0 { BLUE } else { VERMILLION },
        });
        level += c;
    }
    rows.push(Bar {
        name: "= prediction".to_string(),
        from: 0.0,
        to: level,
        colour: GREY,
    });
    horizontal_bars(title, &cut(explains, 60), &rows)
}

/// One bar of `horizontal_bars`: from `from` to `to`, in `colour`.
struct Bar {
    name: String,
    from: f64,
    to: f64,
    colour: RGBColor,
}

/// Bars across, the first at the top, each named on the left.
fn horizontal_bars(title: &str, x_desc: &str, rows: &[Bar]) -> Drawn {
    let names: Vec<String> = rows.iter().map(|r| cut(&r.name, 24)).collect();
    let area = name_area(names.iter().map(|n| n.chars().count()));
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.from, r.to])
        .chain([0.0])
        .collect();
    let x = Axis::over(values.iter().copied(), tenth(&values))?;
    let n = rows.len().max(1);
    draw(title, (WIDTH, 90 + 26 * n as u32), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(area)
            .build_cartesian_2d(x.range(), -0.5..n as f64 - 0.5)
            .map_err(err)?;
        let name = |v: &f64| {
            let k = v.round();
            if (v - k).abs() < 1e-6 && k >= 0.0 {
                (n - 1)
                    .checked_sub(k as usize)
                    .and_then(|i| names.get(i).cloned())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(6)
            .y_labels(n + 1)
            .x_label_formatter(&|u| short(x.value(*u)))
            .y_label_formatter(&name)
            .x_desc(x_desc)
            .label_style((FONT, LABEL_SIZE - 1))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(k, r)| {
                let y = (n - 1 - k) as f64;
                Rectangle::new(
                    [(x.at(r.from), y - 0.35), (x.at(r.to), y + 0.35)],
                    r.colour.filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// Each trial's mean score against its fit time, coloured by algorithm.
pub struct TrialPoint {
    pub seconds: f64,
    pub score: f64,
    pub algorithm: String,
    pub chosen: bool,
}

pub fn trials(title: &str, metric: &str, points: &[TrialPoint]) -> Drawn {
    let points: Vec<&TrialPoint> = points
        .iter()
        .filter(|p| p.seconds.is_finite() && p.score.is_finite())
        .collect();
    let mut algorithms: Vec<&str> = points.iter().map(|p| p.algorithm.as_str()).collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    let lo = points
        .iter()
        .map(|p| p.seconds.max(1e-3))
        .fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|p| p.seconds.max(1e-3))
        .fold(0.0f64, f64::max);
    let seconds = if lo.is_finite() && hi > 0.0 {
        drawable(lo / 1.5..hi * 1.5)?
    } else {
        1e-3..1.0
    };
    let scores: Vec<f64> = points.iter().map(|p| p.score).collect();
    let y = Axis::over(scores.iter().copied(), tenth(&scores))?;
    let at = |p: &TrialPoint| (within(&seconds, p.seconds.max(1e-3)), y.at(p.score));
    let mut key: Vec<(String, Mark)> = algorithms
        .iter()
        .enumerate()
        .map(|(k, a)| (a.to_string(), Mark::Dot(colour(k))))
        .collect();
    key.push(("chosen".to_string(), Mark::Ring(GREEN)));
    draw(title, (WIDTH + KEY_WIDTH, HEIGHT + 40), |root| {
        let plot = with_key(root, &key)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(seconds.clone().log_scale(), y.range())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|u| short(y.value(*u)))
            .x_desc("fit time per trial (seconds, log scale)")
            .y_desc(format!("mean {metric} over the folds"))
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        for (k, algorithm) in algorithms.iter().enumerate() {
            let c = colour(k);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.algorithm == *algorithm)
                        .map(|p| Circle::new(at(p), 5, c.filled())),
                )
                .map_err(err)?;
        }
        chart
            .draw_series(
                points.iter().filter(|p| p.chosen).map(|p| {
                    Circle::new((p.seconds.max(1e-3), p.score), 10, GREEN.stroke_width(3))
                }),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// A small line of values, no axes: the overview's trend.
pub fn sparkline(title: &str, values: &[f64]) -> Drawn {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let y = Axis::over(values.iter().copied(), tenth(&values))?;
    let n = values.len().max(2);
    draw(title, (160, 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(4)
            .build_cartesian_2d(0.0..(n - 1) as f64, y.range())
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, &v)| (i as f64, y.at(v))),
                BLUE.stroke_width(2),
            ))
            .map_err(err)?;
        if let Some(&last) = values.last() {
            chart
                .draw_series([Circle::new(
                    ((values.len() - 1) as f64, y.at(last)),
                    3,
                    VERMILLION.filled(),
                )])
                .map_err(err)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_one_svg_with_its_title_first_and_labels_escaped() {
        let svg = bars(
            "importance of <script>",
            "drop",
            &[
                ("<script>alert(1)</script>".into(), 0.5),
                ("b".into(), -0.1),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg role=\"img\" class=\"chart\" style=\"max-width: 680px\" "));
        assert!(svg.contains("<title>importance of &lt;script&gt;</title>"));
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&lt;script&gt;alert(1)"));
        assert_eq!(svg.matches("<svg").count(), 1);
        // Two bars beside the background and the axes' frame.
        assert!(svg.matches("<rect").count() >= 3);
    }

    /// Runs `draw` on another thread and fails if it takes over 20 s:
    /// plotters loops for ever over a range it cannot step through.
    fn finishes(name: &str, draw: impl FnOnce() -> Drawn + Send + 'static) {
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(draw());
        });
        match wait.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(Ok(svg)) => assert!(svg.starts_with("<svg "), "{name}"),
            Ok(Err(why)) => assert!(why.contains("draw"), "{name}: {why}"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name}: drawing did not finish")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{name}: drawing panicked")
            }
        }
    }

    #[test]
    fn every_chart_draws_or_refuses_any_numbers_and_never_hangs() {
        const ODD: [f64; 17] = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            -f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e-323,
            1e-30,
            1e-25,
            3e-25,
            0.0,
            -1.0,
            1e16,
            1e16 + 2.0,
            1.7e308,
            0.5,
        ];
        // Alone, in pairs (narrow and wide ranges), and in pairs with 0.5.
        let sets: Vec<Vec<f64>> = std::iter::once(Vec::new())
            .chain(ODD.iter().map(|&v| vec![v]))
            .chain(
                ODD.iter()
                    .flat_map(|&a| ODD.iter().map(move |&b| vec![a, b])),
            )
            .chain(
                ODD.iter()
                    .flat_map(|&a| ODD.iter().map(move |&b| vec![a, b, 0.5])),
            )
            .collect();
        for (k, values) in sets.into_iter().enumerate() {
            let named = |v: &[f64]| -> Vec<(String, f64)> {
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| (format!("f{i}"), x))
                    .collect()
            };
            let v = values.clone();
            finishes(&format!("bars {k} {v:?}"), move || {
                bars("t", "x", &named(&v))
            });
            let v = values.clone();
            finishes(&format!("waterfall {k} {v:?}"), move || {
                waterfall("t", "e", v.first().copied().unwrap_or(0.0), &named(&v))
            });
            let v = values.clone();
            finishes(&format!("versions {k} {v:?}"), move || {
                let points: Vec<VersionPoint> = v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| VersionPoint {
                        at: i as f64 * 60.0 + 1.8e9,
                        score: x,
                        version: i as i64,
                        deployed: i == 0,
                        live: i == 1,
                        parent: (i > 0).then_some((1.8e9, x)),
                    })
                    .collect();
                versions("t", "f1", &points)
            });
            let v = values.clone();
            finishes(&format!("lines {k} {v:?}"), move || {
                let series = [Series {
                    name: "s".into(),
                    points: v
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| (i as f64 + 1.8e9, x))
                        .collect(),
                    highlighted: true,
                }];
                let references = [Reference {
                    value: v.first().copied().unwrap_or(0.1),
                    name: "r".into(),
                }];
                for log in [false, true] {
                    let drawn = lines_over_time(&LinesOverTime {
                        title: "t",
                        y_desc: "y",
                        series: &series,
                        references: &references,
                        log,
                    });
                    if let Err(why) = &drawn {
                        assert!(why.contains("draw"), "{why}");
                    }
                }
                Ok("<svg ".into())
            });
            let v = values.clone();
            finishes(&format!("residuals {k} {v:?}"), move || {
                let (lo, hi) = (
                    v.first().copied().unwrap_or(0.0),
                    v.get(1).copied().unwrap_or(1.0),
                );
                residuals(
                    "t",
                    "y",
                    &Grid {
                        lo,
                        hi,
                        steps: 24,
                        cells: &[(0, 0, 1), (23, 23, 5)],
                    },
                )
            });
            let v = values.clone();
            finishes(&format!("trials {k} {v:?}"), move || {
                let points: Vec<TrialPoint> = v
                    .iter()
                    .map(|&x| TrialPoint {
                        seconds: x,
                        score: x,
                        algorithm: "a".into(),
                        chosen: true,
                    })
                    .collect();
                trials("t", "f1", &points)
            });
            let v = values.clone();
            finishes(&format!("distribution {k} {v:?}"), move || {
                let bins: Vec<(String, f64, f64)> =
                    v.iter().map(|&x| ("b".into(), x, 0.1)).collect();
                distribution("t", &bins)
            });
            let v = values.clone();
            finishes(&format!("calibration {k} {v:?}"), move || {
                let bins: Vec<(f64, f64, u64)> = v.iter().map(|&x| (x, x, 1)).collect();
                calibration("t", "p", &bins)
            });
            let v = values.clone();
            finishes(&format!("timeline {k} {v:?}"), move || {
                let events: Vec<Event> = v.iter().map(|&at| Event { at, lane: 1 }).collect();
                let (start, end) = (
                    v.first().copied().unwrap_or(0.0),
                    v.last().copied().unwrap_or(1.0),
                );
                timeline("t", &["a", "b"], start, end, &events)
            });
            let v = values.clone();
            finishes(&format!("confusion {k} {v:?}"), move || {
                let labels: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
                // More rows than labels, and counts up to u64::MAX.
                let counts: Vec<Vec<u64>> = (0..v.len() + 1)
                    .map(|i| vec![u64::MAX >> i; v.len() + 2])
                    .collect();
                confusion("t", &labels, &counts)
            });
            let v = values;
            finishes(&format!("sparkline {k} {v:?}"), move || sparkline("t", &v));
        }
    }

    /// The `cx` of each circle an SVG draws.
    fn circles(svg: &str) -> Vec<f64> {
        svg.match_indices("<circle cx=\"")
            .map(|(at, open)| {
                let rest = &svg[at + open.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn ordinary_inputs_draw_and_spread_over_their_axes() {
        // Versions a minute apart, this year: apart on the chart.
        let now = 1.8e9;
        let points: Vec<VersionPoint> = (0..3)
            .map(|i| VersionPoint {
                at: now + 60.0 * f64::from(i),
                score: 0.8 + 0.05 * f64::from(i),
                version: i64::from(i),
                deployed: false,
                live: false,
                parent: None,
            })
            .collect();
        let cx = circles(&versions("t", "f1", &points).unwrap());
        assert_eq!(cx.len(), 3 + 3, "the key's three marks, then three points");
        assert!(cx[3] + 100.0 < cx[4] && cx[4] + 100.0 < cx[5], "{cx:?}");
        // A timeline of ten minutes, and values in tiny units, draw.
        let events = [Event {
            at: now + 300.0,
            lane: 0,
        }];
        assert!(timeline("t", &["a"], now, now + 600.0, &events).is_ok());
        let tiny = [("a".to_string(), 1e-30), ("b".to_string(), 3e-30)];
        let svg = bars("t", "x", &tiny).unwrap();
        assert!(
            svg.contains("e-30\n</text>"),
            "labelled in its own units: {svg}"
        );
    }

    #[test]
    fn labels_are_cut_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
