//! The `inncopilot` binary on the sample graph: the JSON contract of `blocks` and `ventures`,
//! the tables, and how the graph is chosen (flag, config file, environment).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn sample_graph() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph")
}

/// Run the binary from a neutral folder, with no inherited INNCOPILOT_* settings.
fn inncopilot(args: &[&str], env: &[(&str, &str)], folder: &Path) -> std::io::Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inncopilot"));
    command.args(args).current_dir(folder);
    for (name, _) in std::env::vars() {
        if name.starts_with("INNCOPILOT_") || name.starts_with("OPENAI_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn blocks_json_on_the_sample_graph() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let output = inncopilot(
        &["--graph", &graph.to_string_lossy(), "blocks", "--json"],
        &[],
        folder.path(),
    )?;
    assert!(output.status.success(), "{}", stderr(&output));
    let blocks: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    // The keys of the output contract (PRODUCT.md section 9).
    for block in blocks.as_array().ok_or("not an array")? {
        for key in [
            "id",
            "title",
            "page",
            "item_class",
            "definition",
            "questions",
            "keys",
            "relations",
            "weight",
            "examples",
        ] {
            assert!(block.get(key).is_some(), "missing {key} in {block}");
        }
    }
    insta::assert_snapshot!("blocks_json", stdout(&output));
    Ok(())
}

#[test]
fn ventures_json_on_the_sample_graph() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let output = inncopilot(
        &["ventures", "--json", "--graph", &graph.to_string_lossy()],
        &[],
        folder.path(),
    )?;
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!("ventures_json", stdout(&output));
    Ok(())
}

#[test]
fn tables_without_json() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let graph = graph.to_string_lossy();
    let blocks = inncopilot(&["--graph", &graph, "blocks"], &[], folder.path())?;
    let ventures = inncopilot(&["--graph", &graph, "ventures"], &[], folder.path())?;
    assert!(blocks.status.success() && ventures.status.success());
    insta::assert_snapshot!("blocks_table", stdout(&blocks));
    insta::assert_snapshot!("ventures_table", stdout(&ventures));
    Ok(())
}

#[test]
fn the_graph_comes_from_a_config_file_relative_to_it_or_the_environment() -> TestResult {
    let folder = tempfile::tempdir()?;
    let config = folder.path().join("settings").join("inncopilot.toml");
    std::fs::create_dir_all(folder.path().join("settings"))?;
    // A relative path in a config file resolves against the file's folder.
    let relative = pathdiff(&sample_graph(), folder.path().join("settings").as_path());
    std::fs::write(&config, format!("[graph]\npath = {:?}\n", relative))?;
    let by_flag = inncopilot(
        &["--config", &config.to_string_lossy(), "ventures", "--json"],
        &[],
        folder.path(),
    )?;
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    let by_env = inncopilot(
        &["ventures", "--json"],
        &[("INNCOPILOT_CONFIG", &config.to_string_lossy())],
        folder.path(),
    )?;
    let by_graph_env = inncopilot(
        &["ventures", "--json"],
        &[("INNCOPILOT_GRAPH_PATH", &sample_graph().to_string_lossy())],
        folder.path(),
    )?;
    assert_eq!(stdout(&by_flag), stdout(&by_env));
    assert_eq!(stdout(&by_flag), stdout(&by_graph_env));
    assert!(stdout(&by_flag).contains("Underwater restaurant"));
    Ok(())
}

#[test]
fn a_missing_graph_is_an_input_error_naming_the_path() -> TestResult {
    let folder = tempfile::tempdir()?;
    let output = inncopilot(&["--graph", "no-such-graph", "blocks"], &[], folder.path())?;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("no-such-graph") && message.contains("does not exist"),
        "{message}"
    );
    Ok(())
}

#[test]
fn a_folder_without_block_pages_is_an_input_error_saying_where_it_looked() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = folder.path().join("empty");
    std::fs::create_dir_all(&graph)?;
    let output = inncopilot(&["--graph", "empty", "blocks"], &[], folder.path())?;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
    let message = stderr(&output);
    for words in [
        &format!("no block page in {}: 0 .md pages read", graph.display()),
        "--graph DIR",
        "INNCOPILOT_GRAPH_PATH",
        "graph.path in the config file",
    ] {
        assert!(message.contains(words), "{words:?} not in {message}");
    }
    // The same without --graph: the default is the working folder.
    let output = inncopilot(&["blocks"], &[], &graph)?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("0 .md pages read"),
        "{}",
        stderr(&output)
    );
    Ok(())
}

#[test]
fn a_bad_config_file_names_the_file_and_key() -> TestResult {
    let folder = tempfile::tempdir()?;
    let config = folder.path().join("bad.toml");
    std::fs::write(&config, "[graph]\nfolder = \"x\"\n")?;
    let output = inncopilot(
        &["--config", &config.to_string_lossy(), "blocks"],
        &[],
        folder.path(),
    )?;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("bad.toml") && message.contains("graph.folder"),
        "{message}"
    );
    Ok(())
}

#[test]
fn preview_json_for_an_existing_venture() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let args = [
        "--graph",
        &graph.to_string_lossy(),
        "preview",
        "--venture",
        "space x",
        "--block",
        "relationship",
        "--count",
        "3",
        "--json",
    ];
    let output = inncopilot(&args, &[], folder.path())?;
    assert!(output.status.success(), "{}", stderr(&output));
    let preview: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    for key in [
        "block",
        "venture",
        "provider",
        "model",
        "messages",
        "schema",
        "params",
        "estimated_prompt_tokens",
        "estimated_cost_usd",
    ] {
        assert!(preview.get(key).is_some(), "missing {key}");
    }
    assert_eq!(preview["block"], "profile-(id)/relationship");
    assert_eq!(preview["venture"], "Space X");
    assert_eq!(preview["provider"], "local");
    assert_eq!(preview["schema"]["properties"]["items"]["maxItems"], 3);
    assert_eq!(preview["messages"][0]["role"], "system");
    assert!(
        preview["estimated_prompt_tokens"]
            .as_u64()
            .is_some_and(|tokens| tokens > 200)
    );
    Ok(())
}

#[test]
fn preview_with_a_key_goes_to_openai_and_never_shows_the_key() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let brief = folder.path().join("brief.txt");
    std::fs::write(
        &brief,
        "Bikes rented by the hour, charged by solar roofs.\n",
    )?;
    let args = [
        "--graph",
        &graph.to_string_lossy(),
        "preview",
        "--venture",
        "Solar Bikes",
        "--brief-file",
        &brief.to_string_lossy(),
        "--block",
        "profile-(id)",
    ];
    let secret = "sk-test-0123456789abcdef";
    let output = inncopilot(&args, &[("OPENAI_API_KEY", secret)], folder.path())?;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("provider       openai (gpt-4o-mini, https://api.openai.com/v1)"),
        "{text}"
    );
    assert!(text.contains("venture        Solar Bikes (new)"), "{text}");
    assert!(
        text.contains("About the venture: Bikes rented by the hour, charged by solar roofs."),
        "{text}"
    );
    assert!(!text.contains(secret) && !stderr(&output).contains(secret));
    Ok(())
}

#[test]
fn preview_of_an_unknown_venture_without_brief_names_the_known_ones() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let args = [
        "--graph",
        &graph.to_string_lossy(),
        "preview",
        "--venture",
        "Moon Base",
        "--block",
        "relationship",
    ];
    let output = inncopilot(&args, &[], folder.path())?;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("unknown venture `Moon Base`")
            && message.contains("--brief")
            && message.contains("Exotic Pet Rental"),
        "{message}"
    );
    let args = [
        "--graph",
        &graph.to_string_lossy(),
        "preview",
        "--venture",
        "Space X",
        "--block",
        "channels",
    ];
    let output = inncopilot(&args, &[], folder.path())?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "no block matches `channels`; the blocks are: profile-(id), profile-(id)/relationship"
        ),
        "{}",
        stderr(&output)
    );
    Ok(())
}

#[test]
fn block_names_as_people_type_them_and_what_a_wrong_one_suggests() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let graph = graph.to_string_lossy();
    let preview = |block: &str| {
        inncopilot(
            &[
                "--graph",
                &graph,
                "preview",
                "--venture",
                "Space X",
                "--block",
                block,
                "--json",
            ],
            &[],
            folder.path(),
        )
    };
    for (query, id) in [
        ("profile", "profile-(id)"),
        ("Profile ID relationship", "profile-(id)/relationship"),
        ("profile-(id)___relationship", "profile-(id)/relationship"),
    ] {
        let output = preview(query)?;
        assert!(output.status.success(), "{query}: {}", stderr(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(report["block"], id, "{query}");
    }
    let output = preview("relationshp")?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "no block matches `relationshp`; did you mean profile-(id)/relationship? The blocks are: profile-(id), profile-(id)/relationship\n"
        ),
        "{}",
        stderr(&output)
    );

    // A graph of more blocks than an error lists, two of them `notes`.
    let many = tempfile::tempdir()?;
    let block = "- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n";
    let names = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "north___notes",
        "south___notes",
    ];
    let pages: Vec<(String, &str)> = names
        .iter()
        .map(|name| (format!("pages/{name}.md"), block))
        .collect();
    let pages: Vec<(&str, &str)> = pages
        .iter()
        .map(|(path, text)| (path.as_str(), *text))
        .collect();
    write_pages(many.path(), &pages)?;
    let many_graph = many.path().to_string_lossy();
    let preview = |block: &str| {
        inncopilot(
            &[
                "--graph",
                &many_graph,
                "preview",
                "--venture",
                "Acme",
                "--brief",
                "Anvils.",
                "--block",
                block,
            ],
            &[],
            folder.path(),
        )
    };
    let output = preview("echoo")?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "no block matches `echoo`; did you mean echo? The blocks are: alpha, bravo, charlie, delta, echo and 3 more; `inncopilot blocks` lists them\n"
        ),
        "{}",
        stderr(&output)
    );
    let output = preview("Notes")?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "`Notes` matches several blocks (north/notes, south/notes); give the full id"
        ),
        "{}",
        stderr(&output)
    );
    Ok(())
}

/// Write `pages` (path relative to `root`, text) under `root`.
fn write_pages(root: &Path, pages: &[(&str, &str)]) -> std::io::Result<()> {
    for (path, text) in pages {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, text)?;
    }
    Ok(())
}

/// The warning lines of stderr, without tracing's level prefix.
fn warning_lines(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("WARN "))
        .map(str::to_string)
        .collect()
}

#[test]
fn warnings_are_one_line_per_kind_and_all_of_them_with_verbose() -> TestResult {
    let folder = tempfile::tempdir()?;
    let block = "- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n- ## Examples\n  - ### Acme\n    {{embed [[thing/notes/Acme]]}}\n  - ### Beta\n    {{embed [[thing/notes/Beta]]}}\n  - ### Gamma\n    {{embed [[thing/notes/Gamma]]}}\n";
    write_pages(
        folder.path(),
        &[
            ("pages/thing.md", block),
            ("copy/notes.md", "- a copy\n"),
            ("pages/notes.md", "- the original\n"),
        ],
    )?;
    let graph = folder.path().to_string_lossy();
    let summary = inncopilot(&["--graph", &graph, "blocks", "--json"], &[], folder.path())?;
    assert!(summary.status.success(), "{}", stderr(&summary));
    assert_eq!(
        warning_lines(&summary),
        vec![
            // A kind with one warning shows it as it is ...
            "pages/notes.md: page name \"notes\" is also used by copy/notes.md; references go to this one",
            // ... a kind with several, one line.
            "3 embedded pages are not in the graph (first: pages/thing.md:7: embedded page [[thing/notes/Acme]] is not in the graph); -v lists them all",
        ],
        "{}",
        stderr(&summary)
    );
    let verbose = inncopilot(
        &["--graph", &graph, "blocks", "--json", "-v"],
        &[],
        folder.path(),
    )?;
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    let all = warning_lines(&verbose);
    assert_eq!(all.len(), 4, "{all:?}");
    for venture in ["Acme", "Beta", "Gamma"] {
        let missing = format!("embedded page [[thing/notes/{venture}]] is not in the graph");
        assert!(all.iter().any(|line| line.ends_with(&missing)), "{all:?}");
    }
    assert_eq!(
        stdout(&summary),
        stdout(&verbose),
        "--json output is the same"
    );
    Ok(())
}

/// `target` relative to `base` (both absolute), with `..` steps.
fn pathdiff(target: &Path, base: &Path) -> PathBuf {
    let target: Vec<_> = target.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = target
        .iter()
        .zip(&base)
        .take_while(|(left, right)| left == right)
        .count();
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    for component in &target[common..] {
        relative.push(component.as_os_str());
    }
    relative
}

#[test]
fn what_a_person_types_wrong_is_said_once_and_plainly() -> TestResult {
    let folder = tempfile::tempdir()?;
    let graph = sample_graph();
    let graph = graph.to_string_lossy();

    // A missing config file: the cause once, not twice.
    let output = inncopilot(
        &["--graph", &graph, "--config", "missing.toml", "blocks"],
        &[],
        folder.path(),
    )?;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("missing.toml"), "{message}");
    assert_eq!(message.matches("No such file").count(), 1, "{message}");

    // An empty brief is an empty brief, not an unknown venture.
    let output = inncopilot(
        &[
            "--graph",
            &graph,
            "preview",
            "--venture",
            "Nobody",
            "--block",
            "relationship",
            "--brief",
            " ",
        ],
        &[],
        folder.path(),
    )?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("the brief is empty"),
        "{}",
        stderr(&output)
    );

    // Accepting or rejecting nothing is not a success.
    for verb in ["accept", "reject"] {
        let output = inncopilot(
            &[
                "--graph",
                &graph,
                "drafts",
                verb,
                "--venture",
                "Space X",
                "--dry-run",
            ],
            &[],
            folder.path(),
        )?;
        assert_eq!(output.status.code(), Some(2), "drafts {verb}");
        assert!(
            stderr(&output).contains("no draft matches"),
            "{}",
            stderr(&output)
        );
    }

    // A reader that stops early (`| head -1`) ends the output quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_inncopilot"))
        .args(["--graph", &graph, "blocks", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let output = child.wait_with_output()?;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"));
    Ok(())
}

#[test]
fn config_prints_the_effective_settings_without_a_graph() -> TestResult {
    let folder = tempfile::tempdir()?;
    let file = folder.path().join("mine.toml");
    std::fs::write(&file, "[generate]\nbudget_usd = 0.5\n")?;
    let output = inncopilot(
        &["--config", &file.to_string_lossy(), "config"],
        &[("INNCOPILOT_ENRICH_CONCURRENCY", "16")],
        folder.path(),
    )?;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    // A decimal budget from the file, the variable over the default.
    assert!(text.contains("budget_usd = 0.5"), "{text}");
    assert!(text.contains("[enrich]\nconcurrency = 16"), "{text}");
    assert!(text.contains("mine.toml"), "{text}");
    let parsed: toml::Table = text.parse()?;
    assert!(parsed.contains_key("providers"));
    Ok(())
}
