//! SVG bar charts of the medians: one panel per workload, one bar per allocator (same color
//! for an allocator in every panel), log10 scale for times, linear for efficiency.

use std::path::Path;

use plotters::prelude::*;

use crate::{
    report::{Results, format_value},
    workloads::Metric,
};

/// Metrics that get a panel (the g rows are summarised by their p50 and p99.9).
const PLOTTED: [Metric; 11] = [
    Metric::A,
    Metric::B,
    Metric::C,
    Metric::D,
    Metric::E,
    Metric::F1,
    Metric::F2,
    Metric::GAllocP50,
    Metric::GAllocP999,
    Metric::GFreeP999,
    Metric::H,
];

/// Panel grid: columns × rows (one cell is the legend).
const GRID_COLUMNS: usize = 4;
const GRID_ROWS: usize = 3;

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
pub fn write_svg(results: &Results, title: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1600, 1100)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(40);
    header.draw(&Text::new(title.to_string(), (10, 10), ("sans-serif", 22).into_font()))?;
    let panels = body.split_evenly((GRID_ROWS, GRID_COLUMNS));
    let metrics: Vec<Metric> = PLOTTED.into_iter().filter(|m| results.metrics().contains(m)).collect();
    for (panel, metric) in panels.iter().zip(&metrics) {
        draw_panel(panel, results, *metric)?;
    }
    if let Some(legend) = panels.get(metrics.len()) {
        for (index, name) in results.allocators.iter().enumerate() {
            let y = 20 + 24 * index as i32;
            legend.draw(&Rectangle::new([(20, y), (36, y + 16)], color(index).filled()))?;
            legend.draw(&Text::new(name.to_string(), (44, y + 2), ("sans-serif", 16).into_font()))?;
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
        let min = bars.iter().map(|b| to_axis(b.1)).fold(f64::INFINITY, f64::min);
        let max = bars.iter().map(|b| to_axis(b.1)).fold(f64::NEG_INFINITY, f64::max);
        (min.floor().min(0.0), max.ceil().max(min.floor() + 1.0))
    } else {
        (0.0, 100.0)
    };
    let caption = format!(
        "{}: {} [{}{}]",
        metric.key(),
        metric.title(),
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
        .y_labels(if log_scale { (y_high - y_low) as usize + 1 } else { 6 })
        .y_label_formatter(&|y| if log_scale { format_value(10f64.powf(*y)) } else { format!("{y:.0}") })
        .draw()?;
    chart.draw_series(bars.iter().map(|&(i, v)| {
        Rectangle::new([(i as f64 + 0.1, y_low), (i as f64 + 0.9, to_axis(v))], color(i).filled())
    }))?;
    if let Some(goal) = metric.goal() {
        let y = to_axis(goal);
        chart.draw_series(LineSeries::new(
            [(0.0, y), (results.allocators.len() as f64, y)],
            BLACK.stroke_width(1),
        ))?;
    }
    Ok(())
}
