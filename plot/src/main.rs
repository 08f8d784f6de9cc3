//! `scale-plot CSV SVG`: plots a churn series (tests/churn.rs) as three
//! panels over time: the largest free buddy block; allocated bytes and bytes
//! held in per-CPU caches; free blocks per buddy order.

use plotters::prelude::*;
use std::error::Error;

/// One CSV row by column name.
struct Series {
    header: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Series {
    fn read(path: &str) -> Result<Self, Box<dyn Error>> {
        let text = std::fs::read_to_string(path)?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or("empty CSV")?
            .split(',')
            .map(String::from)
            .collect();
        let rows = lines
            .map(|l| {
                l.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<f64>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rows.iter().any(|r| r.len() != header.len()) {
            return Err("ragged CSV".into());
        }
        Ok(Self { header, rows })
    }

    fn col(&self, name: &str) -> Result<Vec<f64>, Box<dyn Error>> {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no column {name}"))?;
        Ok(self.rows.iter().map(|r| r[i]).collect())
    }
}

const MIB: f64 = (1 << 20) as f64;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, csv, svg] = args.as_slice() else {
        return Err("usage: scale-plot CHURN.csv OUT.svg".into());
    };
    let s = Series::read(csv)?;
    let t = s.col("t_s")?;
    let t_max = t.iter().copied().fold(0.0, f64::max).max(1e-3);
    let largest_kib: Vec<f64> = s
        .col("largest_free_pages")?
        .iter()
        .map(|p| (p * 4.0).max(1.0))
        .collect();
    let alloc_mib: Vec<f64> = s.col("allocated_bytes")?.iter().map(|b| b / MIB).collect();
    let cached_mib: Vec<f64> = s
        .col("page_cache_bytes")?
        .iter()
        .zip(s.col("slab_free_bytes")?)
        .map(|(p, f)| (p + f) / MIB)
        .collect();

    let root = SVGBackend::new(svg, (1000, 960)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));

    let top = largest_kib.iter().copied().fold(4.0, f64::max) * 2.0;
    let mut c = ChartBuilder::on(&panels[0])
        .caption(
            "Largest free buddy block (KiB, log scale)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, (1.0..top).log_scale())?;
    c.configure_mesh().x_desc("time (s)").draw()?;
    c.draw_series(LineSeries::new(t.iter().copied().zip(largest_kib), &BLUE))?;

    let top = alloc_mib
        .iter()
        .chain(&cached_mib)
        .copied()
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(&panels[1])
        .caption(
            "Allocated vs held in per-CPU caches (MiB)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..top)?;
    c.configure_mesh().x_desc("time (s)").draw()?;
    c.draw_series(LineSeries::new(t.iter().copied().zip(alloc_mib), &BLACK))?
        .label("allocated (runs + slabs)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    c.draw_series(LineSeries::new(t.iter().copied().zip(cached_mib), &RED))?
        .label("per-CPU caches (page caches + free slab space)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;

    let orders: Vec<(usize, Vec<f64>)> = (0..)
        .map_while(|o| s.col(&format!("free_blocks_o{o}")).ok().map(|c| (o, c)))
        .filter(|(_, c)| c.iter().any(|&n| n > 0.0))
        .collect();
    let top = orders
        .iter()
        .flat_map(|(_, c)| c)
        .copied()
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(&panels[2])
        .caption("Free blocks per buddy order", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..top)?;
    c.configure_mesh().x_desc("time (s)").draw()?;
    for (i, (order, counts)) in orders.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(t.iter().copied().zip(counts), color))?
            .label(format!("order {order}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
