#!/usr/bin/env python3
"""Write the 1,500-page graph of benches/render_prompts.rs (benches/common/mod.rs) for
scripts/bench-serve, so the service renders the very prompts the in-process bench renders.

    bench/serve/make-graph.py OUT_DIR

300 block pages made from the seeds of tests/fixtures/seeds (inline examples, export format,
embedded example pages in turn) and 1,200 example pages reached by embeds: the same bytes as
`common::write_graph`, which a change there must be copied to. Prints the number of pages.
Standard library only; OUT_DIR is replaced.
"""

import argparse
import shutil
from pathlib import Path

# benches/common/mod.rs
BLOCK_PAGES = 300
EXAMPLE_PAGES_PER_EMBED_BLOCK = 12
EXAMPLE_PAGE = ("- #profile [[Government Space Agencies]]\n"
                "\t- National agencies that contract launches.\n"
                "- #profile [[Commercial Satellite Operators]]\n"
                "\t- Telecom companies that need reliable launches.\n")


def write_graph(folder: Path, seeds: Path) -> int:
    inline = (seeds / "000-relationship.md").read_text()
    export = (seeds / "001-relationship-export.md").read_text()
    embedding = (seeds / "002-profile.md").read_text()
    pages = folder / "pages"
    pages.mkdir(parents=True)
    ventures = [f"Venture {index}" for index in range(EXAMPLE_PAGES_PER_EMBED_BLOCK)]
    count = 0
    for index in range(BLOCK_PAGES):
        block_id = f"block-{index}"
        page = pages / f"{block_id}.md"
        if index % 3 == 0:
            page.write_text(f"metamodel-id:: [[{block_id}]]\n{inline}")
        elif index % 3 == 1:
            page.write_text(export)
        else:
            embeds = "".join(
                f"  - ### {block_id}/examples/{venture}\n"
                f"    {{{{embed [[{block_id}/examples/{venture}]]}}}}\n"
                for venture in ventures)
            text = embedding.replace("metamodel-id:: [[profile-(id)]]",
                                     f"metamodel-id:: [[{block_id}]]")
            text = text.split("  - ### profile-(id)/examples/Space X", 1)[0] + embeds
            page.write_text(text)
            for venture in ventures:
                (pages / f"{block_id}___examples___{venture}.md").write_text(EXAMPLE_PAGE)
                count += 1
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=Path,
                        default=Path(__file__).resolve().parents[2] / "tests/fixtures/seeds")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    print(write_graph(args.out, args.seeds))


if __name__ == "__main__":
    main()
