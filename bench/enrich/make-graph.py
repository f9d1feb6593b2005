#!/usr/bin/env python3
"""Write a Logseq graph of BLOCKS x VENTURES empty (venture, block) pairs for scripts/bench-enrich.

    bench/enrich/make-graph.py --blocks 20 --ventures 100 OUT_DIR

The shape is the public xBoK graph's: each block page has a Definition, a Content type with its
item class, an innCoPilot question template and an Examples section that embeds
`[[<block>/examples/<Venture>]]` for every venture. None of the example pages exists, so every
embed is an empty canvas: one pair to draft. Blocks have no `relations::`, so no pair waits for
another and the ideal wall time ceil(pairs / concurrency) x latency holds.

Venture names avoid the mock server's item words (scripts/mock-openai.py) so no drafted name is
taken for the venture's own name. Standard library only; OUT_DIR is replaced.
"""

import argparse
import shutil
from pathlib import Path

# Item classes and their words, cycled over the blocks (a block's class tags its drafts).
CLASSES = ["segment", "channel", "partner", "resource", "activity", "revenue", "cost", "risk",
           "metric", "offer"]
# Venture names: a made-up word pair and a number, nothing like a draft's name.
PREFIXES = ["Quill", "Zephyr", "Tundra", "Mosaic", "Velvet", "Onyx", "Pebble", "Saffron",
            "Nimbus", "Cinder"]


def venture_name(index: int) -> str:
    return f"{PREFIXES[index % len(PREFIXES)]} Works {index + 1:03d}"


def block_page(block_id: str, item_class: str, ventures: list[str]) -> str:
    """The block page: properties, then sections as bulleted `##` headings (Logseq outline)."""
    title = block_id.replace("-", " ")
    definition = (f"The {item_class} ideas a venture relies on, as benchmark block {title}: "
                  f"one concrete {item_class} per item, named and described.")
    lines = [
        "page-type:: [[artifact info]]",
        f"metamodel-id:: [[{block_id}]]",
        "weight:: 50",
        "",
        "- ## 🔍 Definition",
        f"  - {definition}",
        f"- ## 📰 Content type ({item_class})",
        "  - Content is of type text.",
        "- ## 🤖 innCoPilot",
        f"  - If {title} is defined as :{definition}, What could it be?"
        f"Which {item_class} matters most to the venture's first customers?",
        f"    - What would the venture lose without this {item_class}?",
        f"    - Which {item_class} could a competitor not copy quickly?",
        "- ## 👉 Examples",
    ]
    for venture in ventures:
        lines.append(f"  - ### {block_id}/examples/{venture}")
        lines.append(f"    {{{{embed [[{block_id}/examples/{venture}]]}}}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--ventures", type=int, default=100)
    parser.add_argument("out", type=Path)
    arguments = parser.parse_args()

    if arguments.out.exists():
        shutil.rmtree(arguments.out)
    pages = arguments.out / "pages"
    pages.mkdir(parents=True)
    (arguments.out / "logseq").mkdir()
    (arguments.out / "logseq" / "config.edn").write_text("{:meta/version 1}\n")

    ventures = [venture_name(n) for n in range(arguments.ventures)]
    for n in range(arguments.blocks):
        block_id = f"bench-block-{n + 1:02d}"
        item_class = CLASSES[n % len(CLASSES)]
        (pages / f"{block_id}.md").write_text(block_page(block_id, item_class, ventures))
    print(f"{arguments.out}: {arguments.blocks} blocks x {arguments.ventures} ventures = "
          f"{arguments.blocks * arguments.ventures} empty pairs")


if __name__ == "__main__":
    main()
