//! Rendering every (venture, block) prompt of a 1,500-page graph:
//! `cargo bench --bench render_prompts`.
//!
//! Loads the graph of `common` and renders the system and user messages (with the bound answer
//! schema) of every (venture, block) pair. The reference, measured in the same run, is
//! serialising each prompt's context to JSON with serde_json: the cost of touching the same data
//! once without templates. Prints medians and ratios; no assertion on time.

use std::time::Instant;

use inncopilot::graph::Graph;
use inncopilot::prompt::{self, Library, PromptOptions, VentureInput};

mod common;

const RUNS: usize = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = tempfile::tempdir()?;
    let page_count = common::write_graph(folder.path())?;
    let library = Library::new(None)?;
    let budget = PromptOptions {
        tokens: 800,
        ventures: 4,
        constrained: false,
    };

    let mut load_times = Vec::new();
    let mut render_times = Vec::new();
    let mut reference_times = Vec::new();
    let mut prompts = 0;
    let mut characters = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let graph = Graph::load(folder.path())?;
        let ventures = graph.ventures();
        load_times.push(start.elapsed());

        let start = Instant::now();
        let mut rendered = Vec::new();
        for block in &graph.blocks {
            for venture in ventures {
                let input = VentureInput {
                    name: venture.name.clone(),
                    brief: venture.brief.clone(),
                    is_new: false,
                    ..Default::default()
                };
                rendered.push(prompt::render(&library, &graph, block, &input, 5, budget)?);
            }
        }
        render_times.push(start.elapsed());

        let start = Instant::now();
        let mut serialised = 0;
        for prompt in &rendered {
            serialised += serde_json::to_string(&prompt.context)?.len();
        }
        reference_times.push(start.elapsed());
        std::hint::black_box(serialised);

        prompts = rendered.len();
        characters = rendered
            .iter()
            .flat_map(|prompt| prompt.messages.iter())
            .map(|message| message.content.len())
            .sum::<usize>();
    }
    let load = common::median(&mut load_times);
    let render = common::median(&mut render_times);
    let reference = common::median(&mut reference_times);
    println!(
        "graph: {page_count} pages; {prompts} (venture, block) prompts, {:.1} MB of messages",
        characters as f64 / 1e6
    );
    println!(
        "load graph:                        {:>9.2} ms",
        common::ms(load)
    );
    println!(
        "render every prompt:               {:>9.2} ms ({:.1} us per prompt)",
        common::ms(render),
        render.as_secs_f64() * 1e6 / prompts as f64
    );
    println!(
        "load + render:                     {:>9.2} ms",
        common::ms(load + render)
    );
    println!(
        "reference, contexts to JSON:       {:>9.2} ms",
        common::ms(reference)
    );
    println!(
        "ratio render / reference:          {:>9.2}x",
        render.as_secs_f64() / reference.as_secs_f64()
    );
    Ok(())
}
