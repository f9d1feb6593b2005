//! Reading a 1,500-page graph: `cargo bench --bench read_graph`.
//!
//! Builds a graph from the seeds (300 block pages in both formats, 1,200 example pages reached
//! by embeds), then times `Graph::load` (walk, read, parse, extract blocks, examples and
//! ventures) against a reference measured in the same run: reading the same files' bytes with
//! nothing else. Prints the median of several runs and the ratio; no assertion on time.

use std::time::Instant;

use inncopilot::graph::Graph;

mod common;

const RUNS: usize = 15;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = tempfile::tempdir()?;
    let page_count = common::write_graph(folder.path())?;
    let pages = folder.path().join("pages");
    let files: Vec<_> = std::fs::read_dir(&pages)?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    let bytes: u64 = files
        .iter()
        .filter_map(|file| file.metadata().ok())
        .map(|meta| meta.len())
        .sum();

    let mut load_times = Vec::new();
    let mut read_times = Vec::new();
    let mut examples = 0;
    let mut blocks = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut total = 0usize;
        for file in &files {
            total += std::fs::read(file)?.len();
        }
        std::hint::black_box(total);
        read_times.push(start.elapsed());

        let start = Instant::now();
        let graph = Graph::load(folder.path())?;
        let ventures = graph.ventures();
        load_times.push(start.elapsed());
        blocks = graph.blocks.len();
        examples = graph.blocks.iter().map(|block| block.examples.len()).sum();
        std::hint::black_box(ventures);
    }
    let load = common::median(&mut load_times);
    let read = common::median(&mut read_times);
    println!(
        "graph: {page_count} pages, {:.1} MB, {blocks} blocks, {examples} examples",
        bytes as f64 / 1e6
    );
    println!(
        "reference, read the files' bytes: {:>8.2} ms (median of {RUNS})",
        common::ms(read)
    );
    println!(
        "Graph::load + ventures:            {:>8.2} ms (median of {RUNS})",
        common::ms(load)
    );
    println!(
        "ratio load / read:                 {:>8.2}x",
        load.as_secs_f64() / read.as_secs_f64()
    );
    Ok(())
}
