// Printing is this command's interface.
#![allow(clippy::print_stdout)]

//! `marquee shards simulate`: placement balance and movement at scale.

use indicatif::{ProgressBar, ProgressStyle};
use marquee_sharding::simulate::{balance, movement, node_names, Balance, Movement};
use marquee_sharding::Placement;

fn print_balance(report: &Balance) {
    println!(
        "balance   {:>3} nodes, {} keys: busiest {:.3}x mean, idlest {:.3}x mean",
        report.nodes, report.keys, report.max_over_mean, report.min_over_mean
    );
}

fn print_movement(report: &Movement) {
    println!(
        "movement  {:>3} -> {:>3} nodes: {:.2}% of keys moved (fair share {:.2}%, ratio {:.3}); {} moved between old nodes",
        report.from_nodes,
        report.to_nodes,
        report.moved * 100.0,
        report.ideal * 100.0,
        report.moved / report.ideal,
        report.moved_between_old_nodes
    );
}

pub fn run(from: usize, to: usize, keys: u64) -> anyhow::Result<()> {
    anyhow::ensure!(from >= 1 && to > from, "need 1 <= --from < --to");
    let bar = ProgressBar::new((to - from) as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} nodes added ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("growing");
    let first = Placement::new(node_names(from));
    let mut previous = first.clone();
    let mut steps = Vec::new();
    let mut worst_balance = balance(&first, keys);
    for size in from + 1..=to {
        let next = Placement::new(node_names(size));
        steps.push(movement(&previous, &next, keys));
        let spread = balance(&next, keys);
        if spread.max_over_mean > worst_balance.max_over_mean {
            worst_balance = spread;
        }
        previous = next;
        bar.inc(1);
    }
    bar.finish_and_clear();

    print_balance(&balance(&first, keys));
    print_balance(&balance(&previous, keys));
    println!("worst balance on the way:");
    print_balance(&worst_balance);
    if let (Some(first_step), Some(last_step)) = (steps.first(), steps.last()) {
        print_movement(first_step);
        print_movement(last_step);
    }
    let ratios: Vec<f64> = steps.iter().map(|step| step.moved / step.ideal).collect();
    let worst = ratios.iter().copied().fold(1.0_f64, |worst, ratio| {
        if (ratio - 1.0).abs() > (worst - 1.0).abs() {
            ratio
        } else {
            worst
        }
    });
    println!(
        "every single-node addition moved between {:.3}x and {:.3}x its fair share (furthest from 1: {worst:.3}x)",
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max)
    );
    print_movement(&movement(&first, &previous, keys));
    Ok(())
}
