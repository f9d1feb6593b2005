//! The 1,500-page graph the benches read: 300 block pages made from the seeds (inline examples,
//! export format, embedded example pages in turn) and 1,200 example pages reached by embeds.

use std::path::Path;
use std::time::Duration;

pub const BLOCK_PAGES: usize = 300;
pub const EXAMPLE_PAGES_PER_EMBED_BLOCK: usize = 12;

/// Write the graph into `folder`; returns the number of pages written.
pub fn write_graph(folder: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds");
    let inline = std::fs::read_to_string(seeds.join("000-relationship.md"))?;
    let export = std::fs::read_to_string(seeds.join("001-relationship-export.md"))?;
    let embedding = std::fs::read_to_string(seeds.join("002-profile.md"))?;
    let example_page = "- #profile [[Government Space Agencies]]\n\t- National agencies that contract launches.\n- #profile [[Commercial Satellite Operators]]\n\t- Telecom companies that need reliable launches.\n";

    let pages = folder.join("pages");
    std::fs::create_dir_all(&pages)?;
    let mut page_count = 0;
    let ventures: Vec<String> = (0..EXAMPLE_PAGES_PER_EMBED_BLOCK)
        .map(|index| format!("Venture {index}"))
        .collect();
    for index in 0..BLOCK_PAGES {
        let id = format!("block-{index}");
        match index % 3 {
            0 => std::fs::write(
                pages.join(format!("{id}.md")),
                format!("metamodel-id:: [[{id}]]\n{inline}"),
            )?,
            1 => std::fs::write(pages.join(format!("{id}.md")), &export)?,
            _ => {
                let embeds: String = ventures
                    .iter()
                    .take(EXAMPLE_PAGES_PER_EMBED_BLOCK)
                    .map(|venture| format!("  - ### {id}/examples/{venture}\n    {{{{embed [[{id}/examples/{venture}]]}}}}\n"))
                    .collect();
                let text = embedding
                    .replace(
                        "metamodel-id:: [[profile-(id)]]",
                        &format!("metamodel-id:: [[{id}]]"),
                    )
                    .split("  - ### profile-(id)/examples/Space X")
                    .next()
                    .unwrap_or_default()
                    .to_string()
                    + &embeds;
                std::fs::write(pages.join(format!("{id}.md")), text)?;
                for venture in ventures.iter().take(EXAMPLE_PAGES_PER_EMBED_BLOCK) {
                    std::fs::write(
                        pages.join(format!("{id}___examples___{venture}.md")),
                        example_page,
                    )?;
                    page_count += 1;
                }
            }
        }
        page_count += 1;
    }

    Ok(page_count)
}

pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
