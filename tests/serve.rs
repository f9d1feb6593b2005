//! `serve`: the real binary on a copy of the sample graph, called with a real HTTP client, the
//! provider scripted by wiremock (it records what each request asked). Every endpoint with good
//! and bad input, the token, path-like names, a job's events in order, cancel then resume, a
//! restart with a job in flight, the graph's lock shared with a command-line run, and the
//! OpenAPI document checked by an independent validator.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::MockServer;

mod common;

use common::mock::{KEY, Recorder, command, inncopilot};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TOKEN: &str = "serve-test-token-5b1e";

/// A running `inncopilot serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    fn start(graph: &Path, provider: &MockServer, token: Option<&str>) -> Result<Server, String> {
        Server::start_with(graph, provider, token, &[])
    }

    fn start_with(
        graph: &Path,
        provider: &MockServer,
        token: Option<&str>,
        extra: &[&str],
    ) -> Result<Server, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut arguments = vec!["serve", "--bind", "127.0.0.1:0", "--grace-seconds", "10"];
        arguments.extend_from_slice(extra);
        let mut child = inncopilot(graph, provider, &arguments);
        if let Some(token) = token {
            child.env("INNCOPILOT_SERVE_TOKEN", token);
        }
        let mut child = child
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| error.to_string())?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (address_sender, address) = std::sync::mpsc::channel();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once(" on http://") {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = address_sender.send(address.to_string());
                }
                if let Ok(mut kept) = kept.lock() {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        });
        let address = address.recv_timeout(Duration::from_secs(30)).map_err(|_| {
            format!(
                "the server did not start: {}",
                seen.lock().map(|s| s.clone()).unwrap_or_default()
            )
        })?;
        Ok(Server {
            child,
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            stderr: seen,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Result<(u16, Value), Box<dyn std::error::Error>> {
        let response = self.client.get(self.url(path)).send().await?;
        answer(response).await
    }

    async fn send(
        &self,
        verb: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Box<dyn std::error::Error>> {
        let mut request = self.client.request(verb, self.url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        answer(request.send().await?).await
    }

    async fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), Box<dyn std::error::Error>> {
        self.send(reqwest::Method::POST, path, Some(TOKEN), Some(body))
            .await
    }

    /// The events of a server-sent-event answer, as (name, data), until the stream ends.
    async fn events(
        &self,
        response: reqwest::Response,
    ) -> Result<Vec<(String, Value)>, Box<dyn std::error::Error>> {
        let text = response.text().await?;
        Ok(parse_events(&text))
    }

    /// Wait until the job's state is one of `states`.
    async fn wait_for(
        &self,
        id: &str,
        states: &[&str],
    ) -> Result<Value, Box<dyn std::error::Error>> {
        let started = Instant::now();
        loop {
            let (_, job) = self.get(&format!("/v1/jobs/{id}")).await?;
            if states.iter().any(|state| job["state"] == *state) {
                return Ok(job);
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("job {id} never reached {states:?}: {job}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start the enrich job of [`ENRICH`] and return its id once the provider has been asked
    /// `requests` times.
    async fn enrich_until_asked(
        &self,
        recorder: &Recorder,
        requests: usize,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let (status, job) = self.post("/v1/enrich", &ENRICH()).await?;
        assert_eq!(status, 202, "{job}");
        let started = Instant::now();
        while recorder.seen().len() < requests {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("the provider was never asked {requests} times").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(job["id"].as_str().ok_or("no id")?.to_string())
    }

    fn logged(&self) -> String {
        self.stderr
            .lock()
            .map(|text| text.clone())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn answer(response: reqwest::Response) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_string());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

/// The error shape every 4xx has: code, message, and the field when there is one.
fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.len() > 10),
        "{body}"
    );
}

const ENRICH: fn() -> Value =
    || json!({"force": true, "count": 2, "provider": "openai", "concurrency": 2, "no_cache": true});

#[tokio::test(flavor = "multi_thread")]
async fn read_endpoints_answer_like_the_commands_and_bad_input_is_named() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::ZERO, None).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;

    let (status, health) = server.get("/healthz").await?;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    // The same JSON as the commands.
    let from_command = |arguments: &[&str]| -> Result<Value, Box<dyn std::error::Error>> {
        let output = inncopilot(graph.path(), &provider, arguments).output()?;
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let (status, blocks) = server.get("/v1/blocks").await?;
    assert_eq!(status, 200);
    assert_eq!(blocks, from_command(&["blocks", "--json"])?);
    let (status, ventures) = server.get("/v1/ventures").await?;
    assert_eq!(status, 200);
    assert_eq!(ventures, from_command(&["ventures", "--json"])?);

    let (status, preview) = server
        .post(
            "/v1/preview",
            &json!({"venture": "Exotic Pet Rental", "block": "relationship", "provider": "openai"}),
        )
        .await?;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview,
        from_command(&[
            "preview",
            "--venture",
            "Exotic Pet Rental",
            "--block",
            "relationship",
            "--provider",
            "openai",
            "--json"
        ])?
    );
    // No key needed, nothing sent.
    let (status, _) = server
        .send(
            reqwest::Method::POST,
            "/v1/preview",
            None,
            Some(&json!({"venture": "Exotic Pet Rental", "block": "profile"})),
        )
        .await?;
    assert_eq!(status, 200);
    assert!(recorder.seen().is_empty());

    // Bad input: the field to fix.
    let (status, body) = server
        .post(
            "/v1/preview",
            &json!({"venture": "Exotic Pet Rental", "blok": "profile"}),
        )
        .await?;
    assert_error(status, &body, 400, "unknown-field");
    assert_eq!(body["error"]["field"], "blok");
    let (status, body) = server
        .post("/v1/preview", &json!({"block": "profile"}))
        .await?;
    assert_error(status, &body, 400, "bad-request");
    assert_eq!(body["error"]["field"], "venture");
    let (status, body) = server
        .post(
            "/v1/preview",
            &json!({"venture": "Exotic Pet Rental", "block": "nosuchblock"}),
        )
        .await?;
    assert_error(status, &body, 404, "unknown-block");
    assert_eq!(body["error"]["field"], "block");
    let (status, body) = server
        .post(
            "/v1/preview",
            &json!({"venture": "Nobody Knows", "block": "profile"}),
        )
        .await?;
    assert_error(status, &body, 404, "unknown-venture");
    let (status, body) = server
        .post(
            "/v1/preview",
            &json!({"venture": "Exotic Pet Rental", "block": "profile", "count": "x"}),
        )
        .await?;
    assert_error(status, &body, 400, "bad-request");
    assert_eq!(body["error"]["field"], "count");
    let big = "x".repeat(300 * 1024);
    let (status, body) = server
        .post(
            "/v1/preview",
            &json!({"venture": "Exotic Pet Rental", "block": "profile", "brief": big}),
        )
        .await?;
    assert_error(status, &body, 413, "too-large");
    let (status, body) = server.get("/v1/nothing-here").await?;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = server.get("/v1/drafts?venture=x&colour=red").await?;
    assert_error(status, &body, 400, "unknown-field");

    let (status, drafts) = server.get("/v1/drafts").await?;
    assert_eq!((status, drafts), (200, json!([])));
    let (status, jobs) = server.get("/v1/jobs").await?;
    assert_eq!((status, jobs), (200, json!([])));
    let (status, body) = server.get("/v1/jobs/20990101T000000Z-0000").await?;
    assert_error(status, &body, 404, "not-found");
    assert!(!server.logged().contains(KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn what_spends_or_writes_needs_the_token() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::ZERO, None).await;
    let graph = common::sample_graph_copy()?;
    let before = snapshot(graph.path())?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let generate =
        json!({"venture": "Exotic Pet Rental", "blocks": ["relationship"], "provider": "openai"});
    let calls: [(reqwest::Method, &str, Value); 6] = [
        (reqwest::Method::POST, "/v1/generate", generate.clone()),
        (reqwest::Method::POST, "/v1/enrich", ENRICH()),
        (
            reqwest::Method::POST,
            "/v1/drafts/accept",
            json!({"all": true}),
        ),
        (
            reqwest::Method::POST,
            "/v1/drafts/reject",
            json!({"all": true}),
        ),
        (
            reqwest::Method::DELETE,
            "/v1/jobs/20990101T000000Z-0000",
            Value::Null,
        ),
        (
            reqwest::Method::POST,
            "/v1/jobs/20990101T000000Z-0000/resume",
            Value::Null,
        ),
    ];
    for (verb, path, body) in &calls {
        let body = (!body.is_null()).then_some(body);
        for token in [None, Some("wrong"), Some("serve-test-token-5b1")] {
            let (status, answer) = server.send(verb.clone(), path, token, body).await?;
            assert_error(status, &answer, 401, "unauthorized");
        }
    }
    assert!(recorder.seen().is_empty(), "nothing was asked");
    assert_eq!(snapshot(graph.path())?, before, "nothing was written");
    // With the token, the same request works.
    let (status, report) = server.post("/v1/generate", &generate).await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["drafts"][0]["items"].as_array().map(Vec::len),
        Some(2)
    );
    drop(server);

    // A server without a token spends and writes nothing.
    let server = Server::start(graph.path(), &provider, None)?;
    let (status, answer) = server
        .send(
            reqwest::Method::POST,
            "/v1/generate",
            Some(TOKEN),
            Some(&generate),
        )
        .await?;
    assert_error(status, &answer, 401, "unauthorized");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("INNCOPILOT_SERVE_TOKEN")
    );
    drop(server);

    // Beyond loopback without a token: refused at start, saying how to set one.
    let output = inncopilot(graph.path(), &provider, &["serve", "--bind", "0.0.0.0:0"]).output()?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INNCOPILOT_SERVE_TOKEN"), "{stderr}");
    Ok(())
}

/// Every file of the folder with its bytes.
fn snapshot(folder: &Path) -> std::io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in walkdir::WalkDir::new(folder) {
        let entry = entry?;
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(folder).unwrap_or(entry.path());
            files.insert(relative.display().to_string(), std::fs::read(entry.path())?);
        }
    }
    Ok(files)
}

#[tokio::test(flavor = "multi_thread")]
async fn path_like_venture_names_write_only_inside_the_graph() -> TestResult {
    let (provider, _recorder) = Recorder::start(Duration::ZERO, None).await;
    let outer = tempfile::tempdir()?;
    let graph = outer.path().join("graph");
    copy_folder(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"),
        &graph,
    )?;
    let outside_before = snapshot(outer.path())?
        .into_keys()
        .filter(|file| !file.starts_with("graph"))
        .collect::<Vec<_>>();
    let server = Server::start(&graph, &provider, Some(TOKEN))?;
    for name in ["../../x", "/etc/passwd", "..\\..\\y", "a/../../../z"] {
        let (status, report) = server
            .post(
                "/v1/generate",
                &json!({"venture": name, "brief": "Rents bicycles to tourists in Lisbon.", "blocks": ["relationship"], "provider": "openai"}),
            )
            .await?;
        assert_eq!(status, 200, "{name}: {report}");
        for draft in report["drafts"].as_array().into_iter().flatten() {
            let file = draft["written_to"].as_str().unwrap_or_default();
            let file = graph.join(file).canonicalize()?;
            assert!(
                file.starts_with(graph.canonicalize()?),
                "{name}: {}",
                file.display()
            );
        }
    }
    let outside_after = snapshot(outer.path())?
        .into_keys()
        .filter(|file| !file.starts_with("graph"))
        .collect::<Vec<_>>();
    assert_eq!(outside_before, outside_after);
    assert!(!Path::new("/etc/passwd.md").exists());
    // Every page written is a page of the graph's own folders.
    for file in snapshot(&graph)?.into_keys() {
        assert!(
            file.starts_with("pages/")
                || file.starts_with("journals/")
                || file.starts_with("logseq/")
                || file.starts_with(".inncopilot/"),
            "{file}"
        );
    }
    Ok(())
}

fn copy_folder(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry?;
        let target = to.join(entry.path().strip_prefix(from).unwrap_or(entry.path()));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_streams_its_progress_and_drafts_are_accepted_and_rejected() -> TestResult {
    let (provider, _recorder) = Recorder::start(Duration::ZERO, None).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let response = server
        .client
        .post(server.url("/v1/generate"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"venture": "Exotic Pet Rental", "provider": "openai", "count": 2}).to_string())
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let events = server.events(response).await?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    // Per block: an attempt, pieces of the answer, done; then the report and the end.
    assert_eq!(names.first(), Some(&"attempt"), "{names:?}");
    assert!(names.contains(&"piece"));
    assert_eq!(
        names.iter().filter(|name| **name == "done").count(),
        2,
        "{names:?}"
    );
    assert_eq!(&names[names.len() - 2..], ["report", "end"]);
    let report = &events[events.len() - 2].1;
    let run = report["run_id"].as_str().ok_or("no run id")?;

    let (status, drafts) = server
        .get("/v1/drafts?venture=Exotic%20Pet%20Rental")
        .await?;
    assert_eq!(status, 200);
    assert_eq!(drafts.as_array().map(Vec::len), Some(4), "{drafts}");

    // Selections as the commands have them.
    let (status, body) = server.post("/v1/drafts/accept", &json!({})).await?;
    assert_error(status, &body, 400, "empty-selection");
    let (status, body) = server
        .post("/v1/drafts/accept", &json!({"venture": "Nobody"}))
        .await?;
    assert_error(status, &body, 404, "no-match");
    let (status, dry) = server
        .post(
            "/v1/drafts/reject",
            &json!({"run": run, "block": "profile", "dry_run": true}),
        )
        .await?;
    assert_eq!(status, 200, "{dry}");
    assert!(
        dry["diff"]
            .as_str()
            .is_some_and(|diff| diff.contains("draft:: true"))
    );
    let (status, accepted) = server
        .post(
            "/v1/drafts/accept",
            &json!({"run": run, "block": "relationship"}),
        )
        .await?;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["drafts"].as_array().map(Vec::len), Some(2));
    let (status, rejected) = server
        .post("/v1/drafts/reject", &json!({"run": run}))
        .await?;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["drafts"].as_array().map(Vec::len), Some(2));
    let (_, drafts) = server.get("/v1/drafts").await?;
    assert_eq!(drafts, json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_sends_its_events_in_order_to_every_subscriber() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::from_millis(100), None).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let (status, job) = server.post("/v1/enrich", &ENRICH()).await?;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().ok_or("no id")?.to_string();
    let pairs = job["pairs"].as_u64().ok_or("no pairs")? as usize;
    assert_eq!(pairs, 10);
    // Two subscribers, one from the start and one late: both see every event, in order.
    let subscribe = || {
        server
            .client
            .get(server.url(&format!("/v1/jobs/{id}/events")))
            .send()
    };
    let early = subscribe().await?;
    let early = server.events(early).await?;
    let late = server.events(subscribe().await?).await?;
    assert_eq!(early.len(), late.len());
    for ((name, data), (late_name, late_data)) in early.iter().zip(&late) {
        assert_eq!((name, data), (late_name, late_data));
    }
    let names: Vec<&str> = early.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|name| **name == "started").count(),
        pairs,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|name| **name == "done").count(),
        pairs,
        "{names:?}"
    );
    assert_eq!(&names[names.len() - 2..], ["totals", "end"]);
    assert_eq!(early[early.len() - 1].1["state"], "finished");
    assert_eq!(early[early.len() - 2].1["drafted"], pairs);
    // Each pair starts before it is done, and a relationship pair only after its venture's
    // profile is done (its prompt reads the profile's drafts).
    for (index, (name, data)) in early.iter().enumerate() {
        if name == "done" {
            let started = early[..index].iter().any(|(earlier, earlier_data)| {
                earlier == "started"
                    && earlier_data["venture"] == data["venture"]
                    && earlier_data["block"] == data["block"]
            });
            assert!(started, "{data}");
        }
        if name == "started" && data["block"] == common::mock::RELATIONSHIP {
            let profile_done = early[..index].iter().any(|(earlier, earlier_data)| {
                earlier == "done"
                    && earlier_data["venture"] == data["venture"]
                    && earlier_data["block"] == common::mock::PROFILE
            });
            assert!(profile_done, "{data}");
        }
    }
    assert_eq!(recorder.seen().len(), pairs);
    let (_, shown) = server.get(&format!("/v1/jobs/{id}")).await?;
    assert_eq!(shown["state"], "finished");
    assert_eq!(shown["report"]["totals"]["drafted"], pairs);
    // The journal has it, as `runs` shows it.
    let output = command(graph.path(), &["runs", "--json"]).output()?;
    let runs: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["done"], pairs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_job_resumes_without_asking_finished_pairs_again() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::from_millis(300), None).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let id = server.enrich_until_asked(&recorder, 3).await?;
    let (status, cancelling) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/jobs/{id}"),
            Some(TOKEN),
            None,
        )
        .await?;
    assert_eq!(status, 202, "{cancelling}");
    let cancelled = server.wait_for(&id, &["cancelled"]).await?;
    let done = cancelled["done"].as_u64().ok_or("no count")? as usize;
    assert!((3..10).contains(&done), "{cancelled}");
    // In-flight pairs finished and were written; the rest were not started.
    let asked_first = recorder.seen();
    assert_eq!(
        asked_first.len(),
        cancelled["report"]["totals"]["drafted"]
            .as_u64()
            .unwrap_or(0) as usize
    );
    let (status, body) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/jobs/{id}"),
            Some(TOKEN),
            None,
        )
        .await?;
    assert_error(status, &body, 409, "conflict");

    recorder.clear();
    let (status, resumed) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/resume"),
            Some(TOKEN),
            None,
        )
        .await?;
    assert_eq!(status, 202, "{resumed}");
    assert_eq!(resumed["id"], id.as_str());
    let finished = server.wait_for(&id, &["finished"]).await?;
    assert_eq!(finished["report"]["totals"]["resumed"], asked_first.len());
    let asked_again = recorder.seen();
    assert_eq!(asked_again.len() + asked_first.len(), 10);
    for seen in &asked_again {
        assert!(
            !asked_first
                .iter()
                .any(|first| first.venture == seen.venture && first.block == seen.block),
            "{} / {} was asked twice",
            seen.venture,
            seen.block
        );
    }
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/resume"),
            Some(TOKEN),
            None,
        )
        .await?;
    assert_error(status, &body, 409, "conflict");
    let (_, drafts) = server.get("/v1/drafts").await?;
    assert_eq!(drafts.as_array().map(Vec::len), Some(20));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cut_short_by_a_restart_is_shown_interrupted_and_resumes() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::from_millis(300), None).await;
    let graph = common::sample_graph_copy()?;
    let mut server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let id = server.enrich_until_asked(&recorder, 4).await?;
    // The server dies (kill -9) with pairs in flight.
    server.child.kill()?;
    server.child.wait()?;
    drop(server);
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let (_, jobs) = server.get("/v1/jobs").await?;
    assert_eq!(jobs[0]["id"], id.as_str());
    assert_eq!(jobs[0]["state"], "interrupted", "{jobs}");
    let (_, shown) = server.get(&format!("/v1/jobs/{id}")).await?;
    assert_eq!(shown["state"], "interrupted");
    let done_before = shown["done"].as_u64().unwrap_or(0) as usize;
    // Pairs whose pages were written: the journal's done ones, and any written in the moment
    // between its pages and its record.
    let (_, drafts) = server.get("/v1/drafts").await?;
    let written_before: std::collections::BTreeSet<(String, String)> = drafts
        .as_array()
        .into_iter()
        .flatten()
        .map(|draft| (draft["venture"].to_string(), draft["block"].to_string()))
        .collect();
    assert!(written_before.len() >= done_before, "{drafts}");
    let (status, events) = server.get(&format!("/v1/jobs/{id}/events")).await?;
    assert_eq!(status, 200);
    assert!(
        events
            .as_str()
            .is_some_and(|text| text.contains("interrupted"))
    );

    recorder.clear();
    let (status, _) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/resume"),
            Some(TOKEN),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    let finished = server.wait_for(&id, &["finished"]).await?;
    assert_eq!(finished["report"]["totals"]["resumed"], done_before);
    // Every pair the journal had not finished is drafted again, and those answered before the
    // kill (written or not) come from the cache: the model is asked only for the others.
    let asked = recorder.seen().len();
    let from_cache = finished["report"]["totals"]["from_cache"]
        .as_u64()
        .unwrap_or(0) as usize;
    assert_eq!(
        asked + from_cache,
        10 - done_before,
        "asked {asked}, from cache {from_cache}"
    );
    assert!(
        asked <= 10 - written_before.len(),
        "asked {asked}: a written pair was asked again"
    );
    let (_, drafts) = server.get("/v1/drafts").await?;
    assert_eq!(drafts.as_array().map(Vec::len), Some(20));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waits_for_a_command_line_run_holding_the_graph() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::from_millis(400), None).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let mut cli = inncopilot(
        graph.path(),
        &provider,
        &[
            "generate",
            "--venture",
            "Exotic Pet Rental",
            "--count",
            "2",
            "--provider",
            "openai",
            "--no-cache",
            "--quiet",
        ],
    )
    .stdout(Stdio::null())
    .spawn()?;
    while recorder.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Readers are never blocked.
    let (status, _) = server.get("/v1/blocks").await?;
    assert_eq!(status, 200);
    let (status, job) = server
        .post("/v1/enrich", &json!({"ventures": ["Underwater restaurant"], "force": true, "count": 2, "provider": "openai", "no_cache": true}))
        .await?;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().ok_or("no id")?.to_string();
    // It says why it waits.
    let started = Instant::now();
    loop {
        let (_, job) = server.get(&format!("/v1/jobs/{id}")).await?;
        assert_eq!(job["state"], "queued", "{job}");
        if job["message"]
            .as_str()
            .is_some_and(|message| message.contains("lock"))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cli_status = tokio::task::block_in_place(|| cli.wait())?;
    assert!(cli_status.success());
    let finished = server.wait_for(&id, &["finished"]).await?;
    assert_eq!(finished["report"]["totals"]["drafted"], 2);
    // The job's requests all came after the command's.
    let seen = recorder.seen();
    let first_job_request = seen
        .iter()
        .position(|seen| seen.venture == "Underwater restaurant")
        .ok_or("the job asked nothing")?;
    assert!(
        seen[..first_job_request]
            .iter()
            .all(|seen| seen.venture == "Exotic Pet Rental")
    );
    assert!(
        seen[first_job_request..]
            .iter()
            .all(|seen| seen.venture == "Underwater restaurant")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_covers_every_endpoint_and_is_valid() -> TestResult {
    let (provider, _recorder) = Recorder::start(Duration::ZERO, None).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let (status, document) = server.get("/openapi.json").await?;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().ok_or("no paths")?;
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in paths {
        for verb in ["get", "post", "delete"] {
            if item.get(verb).is_some() {
                documented.push(format!("{} {path}", verb.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut expected = vec![
        "GET /healthz",
        "GET /v1/blocks",
        "GET /v1/ventures",
        "POST /v1/preview",
        "POST /v1/generate",
        "POST /v1/enrich",
        "GET /v1/jobs",
        "GET /v1/jobs/{id}",
        "DELETE /v1/jobs/{id}",
        "GET /v1/jobs/{id}/events",
        "POST /v1/jobs/{id}/resume",
        "GET /v1/drafts",
        "POST /v1/drafts/accept",
        "POST /v1/drafts/reject",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // Every endpoint that spends or writes says it needs the token.
    for (path, verb) in [
        ("/v1/generate", "post"),
        ("/v1/enrich", "post"),
        ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/resume", "post"),
        ("/v1/drafts/accept", "post"),
        ("/v1/drafts/reject", "post"),
    ] {
        assert_eq!(
            paths[path][verb]["security"],
            json!([{"token": []}]),
            "{verb} {path}"
        );
    }
    // An answer has the shape the document gives it.
    let (_, error) = server.post("/v1/preview", &json!({})).await?;
    let schema = json!({
        "$ref": "#/components/schemas/ErrorBody",
        "components": document["components"],
    });
    let validator = jsonschema::validator_for(&schema)?;
    assert!(validator.is_valid(&error), "{error}");

    // An independent validator (openapi-spec-validator, installed by scripts/test).
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), document.to_string())?;
    match std::env::var("INNCOPILOT_OPENAPI_VALIDATOR") {
        Ok(validator) => {
            let output = std::process::Command::new(&validator)
                .arg(file.path())
                .output()?;
            assert!(
                output.status.success(),
                "{validator}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Err(_) if std::env::var("CI").is_ok() => {
            return Err(
                "INNCOPILOT_OPENAPI_VALIDATOR is not set: scripts/test installs the validator"
                    .into(),
            );
        }
        Err(_) => eprintln!(
            "INNCOPILOT_OPENAPI_VALIDATOR not set: the document was not checked by openapi-spec-validator (scripts/test does it)"
        ),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_pairs_in_flight_finish_journals_the_rest_and_exits_0() -> TestResult {
    let (provider, recorder) = Recorder::start(Duration::from_millis(400), None).await;
    let graph = common::sample_graph_copy()?;
    let mut server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let id = server.enrich_until_asked(&recorder, 3).await?;
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()?;
    assert!(terminated.success());
    let status = tokio::task::block_in_place(|| server.child.wait())?;
    assert_eq!(status.code(), Some(0), "{}", server.logged());
    // Every pair asked was finished and written; the others wait in the journal.
    let asked = recorder.seen().len();
    let output = command(graph.path(), &["runs", "show", &id, "--json"]).output()?;
    let shown: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(shown["run"]["state"], "cancelled", "{shown}");
    let done = shown["pairs"]
        .as_array()
        .ok_or("no pairs")?
        .iter()
        .filter(|pair| pair["state"] == "done")
        .count();
    assert_eq!(done, asked, "{shown}");
    assert!(done < 10);
    let output = command(graph.path(), &["drafts", "list", "--json"]).output()?;
    let drafts: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(drafts.as_array().map(Vec::len), Some(2 * done));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_see_every_write_wherever_the_pages_live() -> TestResult {
    let (provider, _recorder) = Recorder::start(Duration::ZERO, None).await;
    // The pages deep in folders of their own, as in the public knowledge base.
    let graph = tempfile::tempdir()?;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph");
    copy_folder(&sample.join("pages"), &graph.path().join("kb").join("deep"))?;
    copy_folder(&sample.join("logseq"), &graph.path().join("logseq"))?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let (_, drafts) = server.get("/v1/drafts").await?;
    assert_eq!(drafts, json!([]));
    // Another process writes.
    let output = inncopilot(
        graph.path(),
        &provider,
        &[
            "generate",
            "--venture",
            "Space X",
            "--count",
            "2",
            "--provider",
            "openai",
            "--quiet",
        ],
    )
    .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, drafts) = server.get("/v1/drafts").await?;
    assert_eq!(drafts.as_array().map(Vec::len), Some(4), "{drafts}");
    // The server writes.
    let (status, _) = server
        .post("/v1/drafts/reject", &json!({"all": true}))
        .await?;
    assert_eq!(status, 200);
    let (_, drafts) = server.get("/v1/drafts").await?;
    assert_eq!(drafts, json!([]));
    let (_, ventures) = server.get("/v1/ventures").await?;
    assert_eq!(ventures.as_array().map(Vec::len), Some(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_failure_is_a_502_with_its_cause_and_cors_is_off_unless_asked() -> TestResult {
    let refusal = common::mock::api_error(401, "Incorrect API key provided", None);
    let (provider, _recorder) = Recorder::start(Duration::ZERO, Some(refusal)).await;
    let graph = common::sample_graph_copy()?;
    let server = Server::start(graph.path(), &provider, Some(TOKEN))?;
    let (status, body) = server
        .post(
            "/v1/generate",
            &json!({"venture": "Space X", "blocks": ["relationship"], "provider": "openai"}),
        )
        .await?;
    assert_error(status, &body, 502, "provider");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("Incorrect API key")),
        "{body}"
    );
    assert!(!body.to_string().contains(KEY));
    assert!(!server.logged().contains(KEY));
    // No CORS headers unless --cors names an origin.
    let preflight = |server: &Server| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/v1/generate"))
            .header("origin", "https://app.example.org")
            .header("access-control-request-method", "POST")
            .send()
    };
    let answer = preflight(&server).await?;
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    drop(server);
    let server = Server::start_with(
        graph.path(),
        &provider,
        Some(TOKEN),
        &["--cors", "https://app.example.org"],
    )?;
    let answer = preflight(&server).await?;
    assert_eq!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .and_then(|value| value.to_str().ok()),
        Some("https://app.example.org")
    );
    Ok(())
}
