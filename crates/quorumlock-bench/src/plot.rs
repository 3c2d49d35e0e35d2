//! SVG plots of the results (plotters, SVG backend: no fonts or system libraries needed).

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::harness::{median, pct, us, Run};
use crate::libs::Lib;
use crate::Results;

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

fn color(lib: Lib) -> RGBColor {
    COLORS[lib as usize % COLORS.len()]
}

fn lines(
    path: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &BTreeMap<Lib, Vec<(f64, f64)>>,
    log_x: bool,
) {
    let root = SVGBackend::new(path, (760, 460)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let xs = series.values().flatten().map(|p| p.0);
    let ys = series.values().flatten().map(|p| p.1);
    let (x0, x1) = (xs.clone().fold(f64::MAX, f64::min), xs.fold(f64::MIN, f64::max));
    let y1 = ys.fold(0.0, f64::max) * 1.15;
    let tx = |x: f64| if log_x { x.max(1.0).log2() } else { x };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(tx(x0)..tx(x1) + 0.01, 0.0..y1.max(1.0))
        .unwrap();
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| {
            if log_x {
                format!("{:.0}", 2f64.powf(*x))
            } else {
                format!("{x:.0}")
            }
        })
        .draw()
        .unwrap();
    for (lib, pts) in series {
        let c = color(*lib);
        let pts: Vec<(f64, f64)> = pts.iter().map(|(x, y)| (tx(*x), *y)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .unwrap()
            .label(lib.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .unwrap();
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

/// Every plot of a run, into `dir`.
pub fn all(dir: &str, r: &Results) {
    if !r.s1.is_empty() {
        latency_by_n(&format!("{dir}/s1_latency_by_n.svg"), &r.s1);
    }
    if !r.s2.is_empty() {
        throughput_by_tasks(&format!("{dir}/s2_throughput.svg"), &r.s2);
    }
    if !r.s3.is_empty() {
        contention_waits(&format!("{dir}/s3_waits.svg"), &r.s3);
    }
}

fn latency_by_n(path: &str, t: &BTreeMap<(usize, Lib, bool), Vec<Run>>) {
    let mut series: BTreeMap<Lib, Vec<(f64, f64)>> = BTreeMap::new();
    for ((n, lib, multi), runs) in t {
        if *multi {
            continue;
        }
        let p50 = median(runs.iter().map(|r| us(pct(&r.s.acquire, 0.5))).collect());
        series.entry(*lib).or_default().push((*n as f64, p50));
    }
    lines(
        path,
        "S1: uncontended acquire p50 by number of nodes",
        "nodes (N)",
        "acquire p50 (µs)",
        &series,
        false,
    );
}

fn throughput_by_tasks(path: &str, t: &BTreeMap<(usize, Lib, usize), Vec<Run>>) {
    let n_max = t.keys().map(|k| k.0).max().unwrap_or(0);
    let mut series: BTreeMap<Lib, Vec<(f64, f64)>> = BTreeMap::new();
    for ((n, lib, tasks), runs) in t {
        if *n != n_max {
            continue;
        }
        series.entry(*lib).or_default().push((
            *tasks as f64,
            median(runs.iter().map(Run::cycles_per_s).collect()),
        ));
    }
    lines(
        path,
        &format!("S2: lock cycles per second by concurrency (N = {n_max})"),
        "concurrent tasks",
        "cycles / s",
        &series,
        true,
    );
}

fn contention_waits(path: &str, t: &BTreeMap<(usize, Lib, usize), Vec<Run>>) {
    // Wait-time CDF at the largest N, all repetitions pooled; one process per client.
    let n_max = t.keys().map(|k| k.0).max().unwrap_or(0);
    let mut series: BTreeMap<Lib, Vec<(f64, f64)>> = BTreeMap::new();
    for ((n, lib, procs), runs) in t {
        if *n != n_max || *procs != 1 {
            continue;
        }
        let mut waits: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.s.waits.iter().map(|w| w.as_secs_f64() * 1e3))
            .collect();
        waits.sort_by(|a, b| a.total_cmp(b));
        let len = waits.len().max(1) as f64;
        let pts = waits
            .iter()
            .enumerate()
            .step_by((waits.len() / 200).max(1))
            .map(|(i, w)| (*w, 100.0 * i as f64 / len))
            .collect();
        series.insert(*lib, pts);
    }
    lines(
        path,
        &format!("S3: wait time until the lock, 16 tasks on one key (N = {n_max})"),
        "wait (ms)",
        "% of acquisitions",
        &series,
        false,
    );
}
