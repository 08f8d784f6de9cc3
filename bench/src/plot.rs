//! SVG bar charts of the medians: one panel per workload, one bar per allocator (same color
//! for an allocator in every panel), log10 scale for times, linear for efficiency.

use std::path::Path;

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{
    report::{Results, format_value},
    workloads::Metric,
};

/// Metrics that get a panel (the g rows are summarised by their p50 and p99.9).
const PLOTTED: [Metric; 16] = [
    Metric::A,
    Metric::B,
    Metric::C,
    Metric::D,
    Metric::DCpu,
    Metric::E,
    Metric::ECpu,
    Metric::F1,
    Metric::F2,
    Metric::GAllocP50,
    Metric::GAllocP999,
    Metric::GFreeP999,
    Metric::H,
    Metric::R,
    Metric::L,
    Metric::LCpu,
];

/// Panel grid columns (one cell after the panels is the legend).
const GRID_COLUMNS: usize = 4;
/// Size of one panel in pixels.
const PANEL_WIDTH_PX: u32 = 400;
const PANEL_HEIGHT_PX: u32 = 330;
/// Height of the title strip in pixels.
const HEADER_HEIGHT_PX: u32 = 40;

/// Panel caption: short enough to fit a 400 px panel.
fn short_title(metric: Metric) -> &'static str {
    match metric {
        Metric::A => "64 B alloc+free",
        Metric::B => "random 8..2048 B, live set",
        Metric::C => "4 KiB pages, shuffled free",
        Metric::D => "64 B, every free remote",
        Metric::DCpu => "d: CPU time of both threads",
        Metric::E => "8..2048 B, every free remote",
        Metric::ECpu => "e: CPU time of both threads",
        Metric::F1 => "efficiency, uniform 8..2048 B",
        Metric::F2 => "efficiency, talc's method",
        Metric::GAllocP50 => "one alloc, p50",
        Metric::GAllocP99 => "one alloc, p99",
        Metric::GAllocP999 => "one alloc, p99.9",
        Metric::GFreeP50 => "one free, p50",
        Metric::GFreeP99 => "one free, p99",
        Metric::GFreeP999 => "one free, p99.9",
        Metric::H => "metadata per 4 KiB page",
        Metric::R => "realloc growth, 8 B to 256 KiB",
        Metric::L => "larson server, 2 threads",
        Metric::LCpu => "l: CPU time of both threads",
    }
}

/// Color of the allocator at `index` in the run order.
fn color(index: usize) -> RGBColor {
    const PALETTE: [RGBColor; 12] = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(255, 187, 120),
    ];
    PALETTE[index % PALETTE.len()]
}

/// Writes the chart to `path` (SVG).
pub fn write_svg(
    results: &Results,
    title: &str,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let metrics: Vec<Metric> = PLOTTED
        .into_iter()
        .filter(|m| results.metrics().contains(m))
        .collect();
    let rows = (metrics.len() + 1).div_ceil(GRID_COLUMNS);
    let size_px = (
        PANEL_WIDTH_PX * GRID_COLUMNS as u32,
        HEADER_HEIGHT_PX + PANEL_HEIGHT_PX * rows as u32,
    );
    let root = SVGBackend::new(path, size_px).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER_HEIGHT_PX);
    header.draw(&Text::new(
        title.to_string(),
        (10, 10),
        ("sans-serif", 18).into_font(),
    ))?;
    let panels = body.split_evenly((rows, GRID_COLUMNS));
    for (panel, metric) in panels.iter().zip(&metrics) {
        draw_panel(panel, results, *metric)?;
    }
    if let Some(legend) = panels.get(metrics.len()) {
        for (index, name) in results.allocators.iter().enumerate() {
            let y = 20 + 24 * index as i32;
            legend.draw(&Rectangle::new(
                [(20, y), (36, y + 16)],
                color(index).filled(),
            ))?;
            legend.draw(&Text::new(
                name.to_string(),
                (44, y + 2),
                ("sans-serif", 16).into_font(),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

/// One panel: bars for every allocator measured on `metric`.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    results: &Results,
    metric: Metric,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let bars: Vec<(usize, f64)> = results
        .allocators
        .iter()
        .enumerate()
        .filter_map(|(i, a)| results.median(metric, a).map(|v| (i, v)))
        .collect();
    if bars.is_empty() {
        return Ok(());
    }
    let log_scale = !metric.higher_is_better();
    let to_axis = |v: f64| if log_scale { v.max(1e-3).log10() } else { v };
    let (y_low, y_high) = if log_scale {
        let min = bars
            .iter()
            .map(|b| to_axis(b.1))
            .fold(f64::INFINITY, f64::min);
        let max = bars
            .iter()
            .map(|b| to_axis(b.1))
            .fold(f64::NEG_INFINITY, f64::max);
        (min.floor().min(0.0), max.ceil().max(min.floor() + 1.0))
    } else {
        (0.0, 105.0)
    };
    let caption = format!(
        "{}: {} [{}{}]",
        metric.key(),
        short_title(metric),
        metric.unit(),
        if log_scale { ", log" } else { "" }
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 13).into_font())
        .margin(6)
        .x_label_area_size(4)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..results.allocators.len() as f64, y_low..y_high)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(if log_scale {
            (y_high - y_low) as usize + 1
        } else {
            6
        })
        .y_label_formatter(&|y| {
            if log_scale {
                format_value(10f64.powf(*y))
            } else {
                format!("{y:.0}")
            }
        })
        .draw()?;
    chart.draw_series(bars.iter().map(|&(i, v)| {
        Rectangle::new(
            [(i as f64 + 0.1, y_low), (i as f64 + 0.9, to_axis(v))],
            color(i).filled(),
        )
    }))?;
    let label_font =
        TextStyle::from(("sans-serif", 10).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().map(|&(i, v)| {
        Text::new(
            format_value(v),
            (i as f64 + 0.5, to_axis(v)),
            label_font.clone(),
        )
    }))?;
    if let Some(goal) = results.goal_value(metric) {
        let y = to_axis(goal);
        chart.draw_series(LineSeries::new(
            [(0.0, y), (results.allocators.len() as f64, y)],
            BLACK.stroke_width(1),
        ))?;
    }
    Ok(())
}
