//! `enrich` and `runs` against a scripted OpenAI-compatible server that records when each
//! (venture, block) was asked: the plan's order and filters, concurrency, pairs waiting for the
//! pairs their prompt reads, the journal across `kill -9`, a fatal model error, the budget, a
//! page edited by a person while the run writes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inncopilot::config::Settings;
use inncopilot::enrich::{self, EnrichRequest};
use inncopilot::generate::{self, Events};
use inncopilot::graph::Graph;
use inncopilot::prompt::Library;
use inncopilot::run::FailureKind;
use inncopilot::run::plan::Selection;
use serde_json::Value;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

mod common;

use common::mock::{
    KEY, PROFILE, RELATIONSHIP, Recorder, answer_for_block, api_error, command, inncopilot, output,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VENTURES: usize = 5;

const FORCE: [&str; 8] = [
    "enrich",
    "--force",
    "--count",
    "2",
    "--provider",
    "openai",
    "--concurrency",
    "4",
];

fn engine(
    graph: &Path,
    base_url: &str,
    budget: f64,
) -> Result<generate::Engine, Box<dyn std::error::Error>> {
    let mut settings = Settings::load(None)?;
    let openai = settings
        .providers
        .get_mut("openai")
        .ok_or("no openai preset")?;
    openai.base_url = format!("{base_url}/v1");
    settings.generate.budget_usd = budget;
    Ok(generate::engine(
        Arc::new(Graph::load(graph)?),
        Arc::new(settings),
        Arc::new(Library::new(None)?),
        Some("openai"),
        None,
        Arc::new(|name: &str| (name == "OPENAI_API_KEY").then(|| KEY.to_string())),
        true,
    )?)
}

fn pairs_of(plan: &inncopilot::run::plan::Plan) -> Vec<(usize, &str, &str)> {
    plan.pairs
        .iter()
        .map(|pair| (pair.wave, pair.venture.as_str(), pair.block.as_str()))
        .collect()
}

#[test]
fn the_plan_covers_the_pairs_lacking_items_related_blocks_first() -> TestResult {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph");
    let engine = engine(&sample, "http://127.0.0.1:9", 0.0)?;
    let selection = |min_items: usize| Selection {
        min_items,
        count: 5,
        ..Selection::default()
    };
    // Every pair of the sample graph has items: nothing to do by default.
    assert!(enrich::plan(&engine, &selection(1))?.pairs.is_empty());

    // Fewer than 4 items: the five profiles (2 or 3 each), and Space X's 3 relationships, which
    // wait for its profile (relationship relates to profile).
    let plan = enrich::plan(&engine, &selection(4))?;
    assert_eq!(
        pairs_of(&plan),
        [
            (1, "Exotic Pet Rental", PROFILE),
            (1, "extinguished animals meat", PROFILE),
            (1, "Space X", PROFILE),
            (1, "Underwater restaurant", PROFILE),
            (1, "vein visualizer", PROFILE),
            (2, "Space X", RELATIONSHIP),
        ]
    );
    assert_eq!(plan.waves, 2);
    let total: f64 = plan.pairs.iter().filter_map(|pair| pair.cost_usd).sum();
    assert!(
        plan.cost_usd
            .is_some_and(|cost| cost > 0.0 && (cost - total).abs() < 1e-12)
    );
    assert!(plan.pairs.iter().all(|pair| pair.prompt_tokens > 300));
    // A run's plan is estimated only when a budget needs it: the same pairs either way.
    let unbudgeted = enrich::plan_for_budget(&engine, &selection(4), 0.0)?;
    assert_eq!(pairs_of(&unbudgeted), pairs_of(&plan));
    assert_eq!((unbudgeted.prompt_tokens, unbudgeted.cost_usd), (0, None));
    let budgeted = enrich::plan_for_budget(&engine, &selection(4), 1.0)?;
    assert_eq!(
        (budgeted.prompt_tokens, budgeted.cost_usd),
        (plan.prompt_tokens, plan.cost_usd)
    );

    // Filters, case-insensitive; --force takes pairs whatever they hold.
    let filtered = enrich::plan(
        &engine,
        &Selection {
            ventures: vec!["space x".into(), "VEIN VISUALIZER".into()],
            blocks: vec!["relationship".into()],
            force: true,
            count: 2,
            ..Selection::default()
        },
    )?;
    assert_eq!(
        pairs_of(&filtered),
        [
            (1, "Space X", RELATIONSHIP),
            (1, "vein visualizer", RELATIONSHIP)
        ]
    );

    // Unknown names are errors naming the known ones.
    let unknown = enrich::plan(
        &engine,
        &Selection {
            ventures: vec!["Nobody".into()],
            ..selection(1)
        },
    );
    assert!(
        matches!(&unknown, Err(error) if error.to_string().contains("Underwater restaurant")),
        "{unknown:?}"
    );
    let unknown = enrich::plan(
        &engine,
        &Selection {
            blocks: vec!["nothing-like-it".into()],
            ..selection(1)
        },
    );
    assert!(unknown.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn enrich_asks_pairs_concurrently_each_after_the_pairs_it_reads_and_journals_them()
-> TestResult {
    let delay = Duration::from_millis(300);
    let (server, recorder) = Recorder::start(delay, None).await;
    let folder = common::sample_graph_copy()?;
    let mut arguments = FORCE.to_vec();
    arguments.push("--json");
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["totals"]["pairs"], 2 * VENTURES);
    assert_eq!(report["totals"]["drafted"], 2 * VENTURES);
    assert_eq!(report["totals"]["items"], 4 * VENTURES);
    assert_eq!(
        report["drafts"].as_array().map(Vec::len),
        Some(2 * VENTURES)
    );
    // Plain progress lines when stderr is not a terminal.
    assert!(stderr.contains("[10/10] "), "{stderr}");

    let seen = recorder.seen();
    assert_eq!(seen.len(), 2 * VENTURES, "{seen:?}");
    // Four at once: the first four requests came together, not one per delay.
    let first = seen[0].at;
    assert!(seen[3].at.duration_since(first) < delay / 2, "{seen:?}");
    // Each venture's relationships were asked after its profile was answered.
    for venture in seen.iter().map(|seen| seen.venture.clone()) {
        let at = |block: &str| {
            seen.iter()
                .find(|seen| seen.venture == venture && seen.block == block)
                .map(|seen| seen.at)
        };
        let (profile, relationship) = (at(PROFILE), at(RELATIONSHIP));
        assert!(
            matches!((profile, relationship), (Some(profile), Some(relationship))
                if relationship.duration_since(profile) >= delay),
            "{venture}: {seen:?}"
        );
    }

    // The journal lists the run and its pairs.
    let (code, runs, _) = output(&mut command(folder.path(), &["runs"]))?;
    assert_eq!(code, Some(0));
    let run_id = report["run_id"].as_str().ok_or("no run id")?;
    assert!(runs.contains(run_id) && runs.contains("finished") && runs.contains("10/10"));
    let (code, shown, _) = output(&mut command(folder.path(), &["runs", "show", run_id]))?;
    assert_eq!(code, Some(0));
    assert_eq!(shown.matches(" done ").count(), 2 * VENTURES, "{shown}");

    // The drafts are in the graph, once each.
    let (_, listed, _) = output(&mut command(folder.path(), &["drafts", "list", "--json"]))?;
    let listed: Value = serde_json::from_str(&listed)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(4 * VENTURES));

    // Run again: every answer comes from the cache, nothing is sent.
    recorder.clear();
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let again: Value = serde_json::from_str(&stdout)?;
    assert_eq!(again["totals"]["from_cache"], 2 * VENTURES);
    assert!(recorder.seen().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_run_and_run_again_no_finished_pair_is_asked_again() -> TestResult {
    let (server, recorder) = Recorder::start(Duration::from_millis(250), None).await;
    // No cache: only the journal keeps finished pairs from being asked again.
    let arguments = [
        "enrich",
        "--force",
        "--count",
        "2",
        "--provider",
        "openai",
        "--concurrency",
        "2",
        "--no-cache",
        "--json",
    ];
    // The moments are counted in requests seen at the mock, then a pause: before any answer,
    // while answers are being written, late in the run. Ten pairs at concurrency 2 take five
    // rounds of 250 ms, so after the 7th request the run cannot have finished.
    for (requests, pause) in [(1_usize, 50_u64), (4, 260), (7, 120)] {
        let kill_after = format!("{requests} requests and {pause} ms");
        recorder.clear();
        let folder = common::sample_graph_copy()?;
        let mut child = inncopilot(folder.path(), &server, &arguments)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let waiting = std::time::Instant::now();
        while recorder.seen().len() < requests {
            if waiting.elapsed() > Duration::from_secs(60) {
                child.kill()?;
                return Err(format!("the mock never saw {requests} requests").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill()?;
        child.wait()?;
        let asked_first = recorder.seen().len();

        let (_, runs, _) = output(&mut command(folder.path(), &["runs", "--json"]))?;
        let runs: Value = serde_json::from_str(&runs)?;
        let run = &runs[0];
        assert_eq!(run["state"], "interrupted", "{runs}");
        let run_id = run["id"].as_str().ok_or("no run id")?.to_string();
        let (_, shown, _) = output(&mut command(
            folder.path(),
            &["runs", "show", &run_id, "--json"],
        ))?;
        let shown: Value = serde_json::from_str(&shown)?;
        let done: Vec<(String, String)> = shown["pairs"]
            .as_array()
            .ok_or("no pairs")?
            .iter()
            .filter(|pair| pair["state"] == "done")
            .map(|pair| {
                (
                    pair["venture"].as_str().unwrap_or_default().to_string(),
                    pair["block"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert!(done.len() < 2 * VENTURES, "killed after {kill_after}");

        recorder.clear();
        let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(&stdout)?;
        assert_eq!(report["run_id"], run_id.as_str(), "the run is resumed");
        assert_eq!(report["totals"]["resumed"], done.len());
        let asked_again = recorder.seen();
        for (venture, block) in &done {
            assert!(
                !asked_again
                    .iter()
                    .any(|seen| &seen.venture == venture && seen.block == block),
                "killed after {kill_after}: {venture} / {block} was done and asked again"
            );
        }
        assert_eq!(asked_again.len(), 2 * VENTURES - done.len());
        assert!(asked_first >= done.len());

        // Every pair done once, every draft in the graph once.
        let (_, runs, _) = output(&mut command(folder.path(), &["runs", "--json"]))?;
        let runs: Value = serde_json::from_str(&runs)?;
        assert_eq!(runs.as_array().map(Vec::len), Some(1));
        assert_eq!(runs[0]["state"], "finished");
        assert_eq!(runs[0]["done"], 2 * VENTURES);
        let (_, listed, _) = output(&mut command(folder.path(), &["drafts", "list", "--json"]))?;
        let listed: Value = serde_json::from_str(&listed)?;
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(4 * VENTURES),
            "killed after {kill_after}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_stops_the_run_at_once() -> TestResult {
    let refusal = api_error(401, "Incorrect API key provided", None);
    let (server, recorder) = Recorder::start(Duration::ZERO, Some(refusal)).await;
    let folder = common::sample_graph_copy()?;
    let mut arguments = FORCE.to_vec();
    arguments.push("--json");
    let (code, stdout, _) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout)?;
    let failed = report["failed"].as_array().ok_or("no failures")?;
    assert_eq!(failed.len(), 2 * VENTURES);
    let kind = |wanted: &str| {
        failed
            .iter()
            .filter(|failed| failed["kind"] == wanted)
            .count()
    };
    // Only the pairs already in flight were asked; the rest were not attempted.
    let asked = recorder.seen().len();
    assert!((1..=4).contains(&asked), "{asked} requests");
    assert_eq!(kind("fatal"), asked);
    assert_eq!(kind("not-attempted"), 2 * VENTURES - asked);
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("OPENAI_API_KEY")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_over_budget_is_refused_and_a_run_stops_before_passing_it() -> TestResult {
    let (server, recorder) = Recorder::start(Duration::ZERO, None).await;
    let folder = common::sample_graph_copy()?;
    let mut arguments = FORCE.to_vec();
    arguments.extend(["--budget", "0.0005"]);
    let (code, _, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("over the budget of 0.0005 USD"), "{stderr}");
    assert!(recorder.seen().is_empty());

    // Within the run: each request reserves its estimate first; the run stops before one would
    // pass the budget.
    let selection = Selection {
        force: true,
        count: 2,
        min_items: 1,
        ..Selection::default()
    };
    let estimate = {
        let engine = engine(folder.path(), &server.uri(), 0.0)?;
        let plan = enrich::plan(&engine, &selection)?;
        plan.pairs[0].cost_usd.ok_or("no price")?
    };
    let budget = 3.0 * estimate;
    let engine = Arc::new(engine(folder.path(), &server.uri(), budget)?);
    let plan = enrich::plan(&engine, &selection)?;
    let request = EnrichRequest {
        selection,
        concurrency: 1,
        ..EnrichRequest::default()
    };
    let report = enrich::run(engine, plan, &request, Events::none()).await?;
    assert!(report.totals.drafted >= 1, "{:?}", report.totals);
    let not_attempted = report
        .failed
        .iter()
        .filter(|failed| failed.kind == FailureKind::NotAttempted)
        .count();
    assert!(not_attempted >= 1, "{:?}", report.failed);
    assert!(
        report
            .failed
            .iter()
            .any(|failed| failed.kind == FailureKind::Budget && failed.reason.contains("budget")),
        "{:?}",
        report.failed
    );
    let spent = report.totals.cost_usd.ok_or("no cost")?;
    assert!(spent > 0.0 && spent <= budget, "{spent} of {budget}");
    assert_eq!(recorder.seen().len(), report.totals.drafted);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_export_then_import_with_an_invalid_line_asks_only_that_pair_live() -> TestResult {
    let (server, recorder) = Recorder::start(Duration::ZERO, None).await;
    let folder = common::sample_graph_copy()?;
    let exported = folder.path().join("batch.jsonl");
    let results = folder.path().join("results.jsonl");
    let exported_path = exported.to_string_lossy().into_owned();
    let mut export = FORCE.to_vec();
    export.extend(["--batch-export", &exported_path]);
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &export))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(recorder.seen().is_empty(), "an export sends nothing");

    // Only the first wave (the profiles: relationships wait for them), each line the request
    // the live path would send, not streamed.
    let lines: Vec<Value> = std::fs::read_to_string(&exported)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), VENTURES);
    for line in &lines {
        assert_eq!(line["method"], "POST");
        assert_eq!(line["url"], "/v1/chat/completions");
        assert_eq!(line["body"]["response_format"]["type"], "json_schema");
        assert!(line["body"].get("stream").is_none());
        assert!(
            line["custom_id"]
                .as_str()
                .unwrap_or_default()
                .ends_with(" / profile-(id)")
        );
    }

    // A batch runner's results: every answer, the first one broken.
    let mut written = String::new();
    for (index, line) in lines.iter().enumerate() {
        let venture = line["custom_id"]
            .as_str()
            .and_then(|id| id.split_once(" / "))
            .map(|(venture, _)| venture.to_string())
            .unwrap_or_default();
        let initials: String = venture
            .split_whitespace()
            .filter_map(|word| word.chars().next())
            .collect::<String>()
            .to_uppercase();
        let content = answer_for_block(&line["body"].to_string())
            .replace("Weekend Riders", &format!("Weekend Riders {initials}"))
            .replace("Hotel Guests", &format!("Hotel Guests {initials}"));
        let result = serde_json::json!({
            "id": format!("batch_req_{index}"),
            "custom_id": line["custom_id"],
            "response": {"status_code": 200, "request_id": "r", "body": {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 900, "completion_tokens": 120}
            }},
            "error": null
        });
        let text = result.to_string();
        written.push_str(match index {
            0 => "{\"custom_id\": \"cut off",
            _ => &text,
        });
        written.push('\n');
    }
    std::fs::write(&results, written)?;
    let broken = lines[0]["custom_id"].as_str().ok_or("no id")?.to_string();

    // Import: the four good answers written as they are; the broken line's pair and the
    // relationships (the next wave) asked live.
    let mut import = FORCE.to_vec();
    let results_path = results.to_string_lossy().into_owned();
    import.extend(["--batch-import", &results_path, "--json"]);
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &import))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("line 1: not JSON"), "{stderr}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["totals"]["drafted"], 2 * VENTURES);
    let live = recorder.seen();
    let profiles_asked: Vec<String> = live
        .iter()
        .filter(|seen| seen.block == PROFILE)
        .map(|seen| format!("{} / {PROFILE}", seen.venture))
        .collect();
    assert_eq!(profiles_asked, [broken]);
    assert_eq!(live.len(), 1 + VENTURES);

    // --no-live: only what the results give, the rest waits.
    let folder = common::sample_graph_copy()?;
    std::fs::copy(&results, folder.path().join("results.jsonl"))?;
    recorder.clear();
    let results_path = folder.path().join("results.jsonl");
    let results_path = results_path.to_string_lossy().into_owned();
    let mut import = FORCE.to_vec();
    import.extend(["--batch-import", &results_path, "--no-live", "--json"]);
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &import))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["totals"]["drafted"], VENTURES - 1);
    assert!(recorder.seen().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_halves_the_requests_out_at_once() -> TestResult {
    let delay = Duration::from_millis(300);
    let (server, recorder) = Recorder::start_with(Recorder {
        delay,
        refuse: None,
        storm: 4,
        broken: None,
        seen: Arc::default(),
    })
    .await;
    let folder = common::sample_graph_copy()?;
    let mut arguments = FORCE.to_vec();
    arguments.push("--json");
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("rate limiting: 2 request(s) at once"),
        "{stderr}"
    );
    // Four requests out at once met the same 429: its retry is warned about once.
    assert_eq!(stderr.matches("; retrying in").count(), 1, "{stderr}");
    let seen = recorder.seen();
    assert_eq!(seen.iter().filter(|seen| seen.refused).count(), 4);
    let answered: Vec<Instant> = seen
        .iter()
        .filter(|seen| !seen.refused)
        .map(|seen| seen.at)
        .collect();
    assert_eq!(answered.len(), 2 * VENTURES);
    // Requests being answered at once, at each answered request's arrival.
    let at_once = |at: Instant| {
        answered
            .iter()
            .filter(|other| **other <= at && at < **other + delay - Duration::from_millis(30))
            .count()
    };
    // The first four were in flight together; once the 429s were seen, never four again.
    assert_eq!(at_once(answered[3]), 4, "{seen:?}");
    let calm = answered[0] + delay;
    let after: Vec<usize> = answered
        .iter()
        .filter(|at| **at >= calm)
        .map(|at| at_once(*at))
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|count| *count <= 3),
        "{after:?}"
    );
    Ok(())
}

/// The batch results a runner would write for an uploaded batch file: every request answered
/// with items of its block, names of its venture's own.
fn results_for(uploaded: &str) -> String {
    let mut results = String::new();
    for line in uploaded.lines().filter(|line| line.starts_with('{')) {
        let Ok(request) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let id = request["custom_id"].as_str().unwrap_or_default();
        let initials: String = id
            .split(" / ")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|word| word.chars().next())
            .collect::<String>()
            .to_uppercase();
        let content = answer_for_block(&request["body"].to_string())
            .replace("Weekend Riders", &format!("Weekend Riders {initials}"))
            .replace("Hotel Guests", &format!("Hotel Guests {initials}"));
        let result = serde_json::json!({
            "id": format!("batch_req_{id}"), "custom_id": id, "error": null,
            "response": {"status_code": 200, "request_id": "r", "body": {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 900, "completion_tokens": 120}
            }}
        });
        results.push_str(&result.to_string());
        results.push('\n');
    }
    results
}

/// OpenAI's Files and Batches endpoints, scripted: an upload is kept, the batch is in progress
/// at the first look and completed at the second, its output made from the upload.
struct BatchApi {
    uploaded: Arc<Mutex<String>>,
    looks: Arc<std::sync::atomic::AtomicUsize>,
}

impl Respond for BatchApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let batch = |status: &str| {
            serde_json::json!({
                "id": "batch_1", "object": "batch", "endpoint": "/v1/chat/completions",
                "input_file_id": "file-in", "completion_window": "24h", "status": status,
                "created_at": 1, "output_file_id": (status == "completed").then_some("file-out")
            })
        };
        match (request.method.as_str(), request.url.path()) {
            ("POST", "/v1/files") => {
                if let Ok(mut uploaded) = self.uploaded.lock() {
                    *uploaded = String::from_utf8_lossy(&request.body).into_owned();
                }
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "id": "file-in", "object": "file", "bytes": request.body.len(),
                    "created_at": 1, "filename": "inncopilot-batch.jsonl", "purpose": "batch"
                }))
            }
            ("POST", "/v1/batches") => {
                ResponseTemplate::new(200).set_body_json(batch("validating"))
            }
            ("GET", "/v1/batches/batch_1") => {
                let look = self.looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let status = if look == 0 {
                    "in_progress"
                } else {
                    "completed"
                };
                ResponseTemplate::new(200).set_body_json(batch(status))
            }
            ("GET", "/v1/files/file-out/content") => {
                let uploaded = self
                    .uploaded
                    .lock()
                    .map(|text| text.clone())
                    .unwrap_or_default();
                ResponseTemplate::new(200).set_body_string(results_for(&uploaded))
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_submit_then_collect_through_the_files_and_batches_endpoints() -> TestResult {
    let (server, recorder) = Recorder::start(Duration::ZERO, None).await;
    let api = BatchApi {
        uploaded: Arc::default(),
        looks: Arc::default(),
    };
    let (uploaded, looks) = (api.uploaded.clone(), api.looks.clone());
    Mock::given(wiremock::matchers::path_regex("^/v1/(files|batches)"))
        .respond_with(api)
        .mount(&server)
        .await;
    let folder = common::sample_graph_copy()?;
    let mut submit = FORCE.to_vec();
    submit.push("--batch-submit");
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &submit))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("submitted batch batch_1: 5 request(s)"),
        "{stdout}"
    );
    let sent = uploaded.lock().map(|text| text.clone()).unwrap_or_default();
    assert_eq!(sent.matches("\"custom_id\"").count(), VENTURES, "{sent}");
    let (_, runs, _) = output(&mut command(folder.path(), &["runs"]))?;
    assert!(
        runs.contains("batch_1") && runs.contains("submitted"),
        "{runs}"
    );

    // Collect the latest submitted batch: in progress, then done; its answers are written and
    // only the next wave (the relationships) is asked live.
    let mut collect = FORCE.to_vec();
    collect.extend(["--batch-collect", "--poll-seconds", "1", "--json"]);
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &collect))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(looks.load(std::sync::atomic::Ordering::SeqCst), 2);
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["totals"]["drafted"], 2 * VENTURES);
    let live = recorder.seen();
    assert_eq!(live.len(), VENTURES);
    assert!(
        live.iter().all(|seen| seen.block == RELATIONSHIP),
        "{live:?}"
    );
    let (_, runs, _) = output(&mut command(folder.path(), &["runs"]))?;
    assert!(runs.contains("collected"), "{runs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_edited_during_the_run_fails_only_its_pair_and_keeps_the_edit() -> TestResult {
    let (server, recorder) = Recorder::start(Duration::from_millis(400), None).await;
    let folder = common::sample_graph_copy()?;
    let mut arguments = FORCE.to_vec();
    arguments[FORCE.len() - 1] = "10";
    arguments.push("--json");
    let child = inncopilot(folder.path(), &server, &arguments)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Every venture's profile is asked at once; before the answers come back, a person edits
    // one venture's example page. The writer takes the answers in batches: the batch holding
    // that page cannot be committed, and is written again one pair at a time.
    let waiting = Instant::now();
    while recorder.seen().len() < VENTURES {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the profiles were never asked"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let page = folder
        .path()
        .join("pages/profile-(id)___examples___Space X.md");
    let edited = std::fs::read_to_string(&page)? + "- a line typed in Logseq meanwhile\n";
    std::fs::write(&page, &edited)?;
    let finished = tokio::task::block_in_place(|| child.wait_with_output())?;
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert_eq!(finished.status.code(), Some(1), "{stdout}");
    let report: Value = serde_json::from_str(&stdout)?;
    let failed: Vec<(&str, &str, &str)> = report["failed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|failed| {
            (
                failed["venture"].as_str().unwrap_or_default(),
                failed["block"].as_str().unwrap_or_default(),
                failed["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(failed, [("Space X", PROFILE, "write")], "{stdout}");
    assert_eq!(report["totals"]["drafted"], 2 * VENTURES, "{stdout}");
    assert_eq!(std::fs::read_to_string(&page)?, edited);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_edited_after_the_graph_was_read_is_read_again_before_writing() -> TestResult {
    // The run's writer starts from the graph its engine read when no page file changed since;
    // a page edited in between (in Logseq, say) has the writer read the graph again, so the
    // pair is written beside the edit instead of failing on it.
    let (server, _recorder) = Recorder::start(Duration::ZERO, None).await;
    let folder = common::sample_graph_copy()?;
    let engine = Arc::new(engine(folder.path(), &server.uri(), 0.0)?);
    let selection = Selection {
        ventures: vec!["Space X".to_string()],
        blocks: vec![PROFILE.to_string()],
        force: true,
        count: 2,
        min_items: 1,
    };
    let plan = enrich::plan(&engine, &selection)?;
    let page = folder
        .path()
        .join("pages/profile-(id)___examples___Space X.md");
    let edited = std::fs::read_to_string(&page)? + "- a line typed in Logseq meanwhile\n";
    std::fs::write(&page, &edited)?;
    let request = EnrichRequest {
        selection,
        concurrency: 1,
        ..EnrichRequest::default()
    };
    let report = enrich::run(engine, plan, &request, Events::none()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.totals.drafted, 1, "{:?}", report.totals);
    let written = std::fs::read_to_string(&page)?;
    assert!(written.starts_with(&edited), "{written}");
    assert!(
        written.len() > edited.len() && written.contains("draft:: true"),
        "{written}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_without_a_model_is_journaled_stopped_and_says_why_once() -> TestResult {
    // No key for the provider: the model is connected for the first pair the cache cannot
    // answer, which fails. The run ends with the cause, said once, and the journal has it
    // stopped with that pair failed (it used to stay `running`, shown as `interrupted`).
    let folder = common::sample_graph_copy()?;
    for arguments in [
        &["generate", "--venture", "Space X", "--provider", "openai"][..],
        &FORCE[..],
    ] {
        let (code, _, stderr) = output(&mut command(folder.path(), arguments))?;
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(
            stderr
                .matches("error: the `openai` provider needs an API key")
                .count(),
            1,
            "{stderr}"
        );
    }
    let (_, runs, _) = output(&mut command(folder.path(), &["runs", "--json"]))?;
    let runs: Value = serde_json::from_str(&runs)?;
    let runs = runs.as_array().ok_or("runs --json is not a list")?;
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in runs {
        assert_eq!(run["state"], "stopped", "{run}");
        assert_eq!(run["done"], 0, "{run}");
        let id = run["id"].as_str().ok_or("a run without an id")?;
        let (_, shown, _) = output(&mut command(folder.path(), &["runs", "show", id, "--json"]))?;
        let shown: Value = serde_json::from_str(&shown)?;
        let failed: Vec<&Value> = shown["pairs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pair| pair["state"] == "failed")
            .collect();
        assert!(!failed.is_empty(), "{shown}");
        for pair in failed {
            let reason = pair["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("needs an API key"), "{pair}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_stops_the_run_and_the_same_command_resumes_it() -> TestResult {
    let folder = common::sample_graph_copy()?;
    // A port nobody listens on (bound, then let go), and retries kept short.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = folder.path().join("short-retries.toml");
    std::fs::write(
        &config,
        "[providers.openai]\nmax_retries = 1\nretry_budget_secs = 5\n",
    )?;
    let config = config.to_string_lossy().into_owned();
    let mut arguments = vec!["--config", config.as_str()];
    arguments.extend(FORCE);
    let (code, stdout, stderr) = output(
        command(folder.path(), &arguments)
            .env("OPENAI_API_KEY", KEY)
            .env("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1")),
    )?;
    // Only the pairs already out tried the server, and are said in one line; the others were
    // not started, and are said in one more; the run can be resumed.
    assert_eq!(code, Some(1), "{stderr}");
    let said: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("  ") && line.contains("is the server running"))
        .collect();
    assert_eq!(said.len(), 2, "{stdout}");
    let tried = match said[0].trim_start().split_once(" pairs (") {
        Some((count, _)) => count.parse()?,
        None => 1,
    };
    assert!((1..=4).contains(&tried), "{stdout}");
    // On stderr too, the cause is said once: by the first retry's warning and the first failed
    // pair's line; the other pairs out say theirs was the same.
    assert_eq!(stderr.matches("; retrying in").count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("is the server running").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("(failed: as the failed pair before)")
            .count(),
        tried - 1,
        "{stderr}"
    );
    let skipped = 2 * VENTURES - tried;
    assert!(
        stdout.contains(&format!("  {skipped} more pairs: not attempted: gave up")),
        "{stdout}"
    );
    assert!(
        stdout.contains("the run stopped: the same command resumes it (with --retry-failed"),
        "{stdout}"
    );
    let (_, runs, _) = output(&mut command(folder.path(), &["runs", "--json"]))?;
    let runs: Value = serde_json::from_str(&runs)?;
    assert_eq!(runs[0]["state"], "stopped", "{runs}");
    // The server is back: the same command asks only the pairs not tried.
    let (server, recorder) = Recorder::start(Duration::ZERO, None).await;
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(recorder.seen().len(), skipped, "{stdout}");
    assert!(
        stdout.contains(&format!("{tried} done or failed by an earlier try")),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_failed_asks_only_the_failed_pairs_of_the_finished_run_again() -> TestResult {
    // Space X is answered text that is no draft: its two pairs fail, the others are written.
    let broken = Recorder {
        delay: Duration::ZERO,
        refuse: None,
        storm: 0,
        broken: Some("Space X"),
        seen: Arc::default(),
    };
    let (server, _) = Recorder::start_with(broken.clone()).await;
    let seeds_of = |recorder: &Recorder| -> Vec<Option<i64>> {
        let seen = recorder.seen().into_iter();
        seen.filter(|seen| seen.venture == "Space X")
            .map(|seen| seen.seed)
            .collect()
    };
    let folder = common::sample_graph_copy()?;
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &FORCE))?;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the same command with --retry-failed asks the failed pairs again"),
        "{stdout}"
    );
    // Failed alike: one line.
    assert!(
        stdout.contains(&format!(
            "  2 pairs (Space X / {PROFILE}, Space X / {RELATIONSHIP}): 0 of 2 items after 3 attempt(s)"
        )),
        "{stdout}"
    );
    let runs = runs_of(folder.path())?;
    assert_eq!(
        (&runs[0]["state"], &runs[0]["failed"]),
        (&"finished".into(), &2.into()),
        "{runs}"
    );
    let run_id = runs[0]["id"].as_str().ok_or("no run id")?.to_string();
    let spent = runs[0]["cost_usd"].as_f64().ok_or("no cost")?;
    let first_seeds = seeds_of(&broken);
    assert_eq!(first_seeds.len(), 6, "three attempts of each pair");

    // The same server answers Space X now: with --retry-failed, the finished run is resumed and
    // only its failed pairs are asked, though --force selects every pair; by the model (the
    // answers they failed with were not cached), with seeds of their own (the same seeds give
    // a seeded model's same answers).
    let recorder = Recorder {
        broken: None,
        seen: Arc::default(),
        ..broken.clone()
    };
    recorder.clone().answer_on(&server).await;
    let mut arguments = FORCE.to_vec();
    arguments.extend(["--retry-failed", "--json"]);
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["run_id"], run_id.as_str(), "{stdout}");
    assert_eq!(report["totals"]["resumed"], 2 * VENTURES - 2);
    assert_eq!(report["totals"]["from_cache"], 0, "{stdout}");
    let asked: Vec<_> = recorder
        .seen()
        .iter()
        .map(|seen| seen.venture.clone())
        .collect();
    assert_eq!(asked, ["Space X", "Space X"], "{stdout}");
    let seeds = seeds_of(&recorder);
    assert!(
        seeds
            .iter()
            .all(|seed| seed.is_some() && !first_seeds.contains(seed)),
        "{seeds:?} after {first_seeds:?}"
    );
    let runs = runs_of(folder.path())?;
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(
        (&runs[0]["state"], &runs[0]["done"]),
        (&"finished".into(), &(2 * VENTURES).into())
    );
    // The run's record says what both tries spent.
    let retried = report["totals"]["cost_usd"].as_f64().ok_or("no cost")?;
    let recorded = runs[0]["cost_usd"].as_f64().ok_or("no cost")?;
    assert!(
        retried > 0.0 && (recorded - (spent + retried)).abs() < 1e-9,
        "{runs}"
    );

    // Nothing failed now: the same command is a new run of every pair (--force). Space X's
    // first requests are asked again: the answers they failed with were not cached.
    recorder.clear();
    let (code, stdout, stderr) = output(&mut inncopilot(folder.path(), &server, &arguments))?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(seeds_of(&recorder).len(), 2, "{stdout}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_ne!(report["run_id"], run_id.as_str());
    assert_eq!(report["totals"]["resumed"], 0);
    assert_eq!(report["totals"]["pairs"], 2 * VENTURES);
    Ok(())
}

fn runs_of(graph: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let (_, runs, _) = output(&mut command(graph, &["runs", "--json"]))?;
    Ok(serde_json::from_str(&runs)?)
}
