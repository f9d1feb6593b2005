//! `inncopilot generate` against a real OpenAI-compatible server written by others:
//! llama-cpp-python 0.3.36 (`python -m llama_cpp.server`) serving the default SmolLM2 GGUF, started
//! with `scripts/llama-cpp-python serve`. No mock: what is checked is what that server answers.
//!
//! It runs when the server's python is there: the venv named by `LLAMA_CPP_PYTHON_VENV`, or the
//! default one `scripts/llama-cpp-python install` makes. Otherwise it says why it skipped and
//! passes, so CI's default path (no venv) pays nothing for it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inncopilot::draft::schema::validate;
use serde_json::Value;

mod common;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What the embedded model's default file is called on the server.
const MODEL_NAME: &str = "SmolLM2-135M-Instruct-Q4_1";

fn data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share")))
        .map(|data| data.join("inncopilot"))
}

/// The venv with llama-cpp-python, or why there is none.
fn venv() -> Result<PathBuf, String> {
    let venv = match std::env::var_os("LLAMA_CPP_PYTHON_VENV").filter(|value| !value.is_empty()) {
        Some(venv) => PathBuf::from(venv),
        None => data_dir()
            .ok_or("neither XDG_DATA_HOME nor HOME is set")?
            .join("venv-llama-cpp-python"),
    };
    if venv.join("bin/python").exists() {
        Ok(venv)
    } else {
        Err(format!(
            "no llama-cpp-python venv at {} (run scripts/llama-cpp-python install, about 15 minutes, or set LLAMA_CPP_PYTHON_VENV)",
            venv.display()
        ))
    }
}

/// The server, stopped when dropped; its log is kept in a file to show when something fails.
struct Server {
    child: Child,
    log: PathBuf,
    base_url: String,
}

impl Server {
    fn start(venv: &Path, log_dir: &Path) -> Result<Server, Box<dyn std::error::Error>> {
        // A port free now; the script would pick one too, but the test must know it.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = log_dir.join("server.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/llama-cpp-python");
        let child = Command::new(script)
            .args(["serve", "--port", &port.to_string()])
            .env("LLAMA_CPP_PYTHON_VENV", venv)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()?;
        let mut server = Server {
            child,
            log,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        let started = Instant::now();
        while !models_answer(port) {
            if let Some(status) = server.child.try_wait()? {
                return Err(format!("the server exited ({status}):\n{}", server.log_text()).into());
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "the server did not answer within 120 s:\n{}",
                    server.log_text()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "llama-cpp-python ready on {} in {:.1} s",
            server.base_url,
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The script `exec`s python: this is the server's own process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `GET /v1/models` answers 200.
fn models_answer(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let mut head = [0_u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.ends_with(b" 200")
}

/// The answers in a response cache folder, oldest first.
fn cached_answers(folder: &Path) -> Vec<(String, Value)> {
    let mut answers: Vec<(String, Value)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let entry: Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
            Some((
                entry["created"].as_str()?.to_string(),
                entry["completion"].clone(),
            ))
        })
        .collect();
    answers.sort_by(|left, right| left.0.cmp(&right.0));
    answers
}

/// One `generate` of two relationship items for Exotic Pet Rental through the server.
struct Run {
    report: Value,
    stderr: String,
    exit_code: Option<i32>,
    /// Every answer the server gave, oldest first (the run's response cache).
    answers: Vec<Value>,
    /// What to show when an assertion fails.
    context: String,
}

/// Start the server, run `generate` through it, print what happened; `None` when skipped.
fn run_generate() -> Result<Option<Run>, Box<dyn std::error::Error>> {
    let venv = match venv() {
        Ok(venv) => venv,
        Err(why) => {
            eprintln!("skipped: {why}");
            return Ok(None);
        }
    };
    let model = data_dir()
        .ok_or("no data folder")?
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.is_file() {
        eprintln!(
            "skipped: no model at {} (run scripts/setup)",
            model.display()
        );
        return Ok(None);
    }
    let folder = common::sample_graph_copy()?;
    let server = Server::start(&venv, folder.path())?;

    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_inncopilot"));
    for (name, _) in std::env::vars() {
        if name.starts_with("INNCOPILOT_") || name.starts_with("OPENAI_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["--graph", &folder.path().to_string_lossy(), "-v"])
        .args([
            "generate",
            "--venture",
            "Exotic Pet Rental",
            "--block",
            "relationship",
        ])
        .args(["--count", "2", "--provider", "llamacpp", "--json"])
        .env("INNCOPILOT_PROVIDERS_LLAMACPP_BASE_URL", &server.base_url)
        .env("INNCOPILOT_PROVIDERS_LLAMACPP_MODEL", MODEL_NAME)
        // The preset allows 300 s per request. Alone on 2 cores this server answers in 10 to 60 s,
        // but beside another process using both cores it decoded at 0.5 to 2 s per token.
        .env("INNCOPILOT_PROVIDERS_LLAMACPP_TIMEOUT_SECS", "3600")
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let server_lines: Vec<String> = server
        .log_text()
        .lines()
        .filter(|line| {
            ["INFO:", "Error", "Exception", "llama_perf_context_print"]
                .iter()
                .any(|mark| line.contains(mark))
        })
        .map(str::to_string)
        .collect();
    let context = format!(
        "stderr:\n{stderr}\nstdout:\n{stdout}\nserver:\n{}",
        server_lines.join("\n")
    );
    let report: Value =
        serde_json::from_str(&stdout).map_err(|error| format!("{error}\n{context}"))?;

    // What happened, for the record (`cargo test --test llama_cpp_python -- --nocapture`).
    eprintln!("--- inncopilot's log ---\n{stderr}");
    let answers = cached_answers(&folder.path().join(".inncopilot/cache"));
    for (created, answer) in &answers {
        eprintln!(
            "--- answer stored {created}, constrained by {} ---\n{}",
            answer["constrained_by"],
            answer["text"].as_str().unwrap_or_default()
        );
    }
    eprintln!("--- the server ---\n{}", server_lines.join("\n"));
    for draft in report["drafts"].as_array().into_iter().flatten() {
        let provenance = &draft["provenance"];
        eprintln!(
            "draft: {} item(s) in {} attempt(s), constrained by {}",
            draft["items"].as_array().map_or(0, Vec::len),
            provenance["attempts"],
            provenance["constrained_by"],
        );
        for item in draft["items"].as_array().into_iter().flatten() {
            eprintln!("  {item}");
        }
    }
    for failed in report["failed"].as_array().into_iter().flatten() {
        eprintln!("failed: {}", failed["reason"]);
    }
    eprintln!(
        "{seconds:.1} s for the process, exit code {:?}",
        output.status.code()
    );
    Ok(Some(Run {
        report,
        stderr,
        exit_code: output.status.code(),
        answers: answers.into_iter().map(|(_, answer)| answer).collect(),
        context,
    }))
}

/// What the format chain promises with this server: `json_schema` refused once, then every
/// answer decoded under the schema sent beside `json_object`.
#[test]
fn llama_cpp_python_refuses_json_schema_and_constrains_answers_to_the_schema() -> TestResult {
    let Some(run) = run_generate()? else {
        return Ok(());
    };
    let context = &run.context;
    assert!(
        matches!(run.exit_code, Some(0 | 1)),
        "neither drafts nor failed items\n{context}"
    );
    assert_eq!(
        run.stderr.matches("refused response_format").count(),
        1,
        "{context}"
    );
    assert_eq!(
        run.stderr
            .matches("refused response_format json_schema (1 validation error:")
            .count(),
        1,
        "{context}"
    );
    assert!(
        run.stderr
            .contains("Input should be 'text' or 'json_object'"),
        "{context}"
    );
    // Every answer is JSON of the block's schema: decoding was constrained.
    let schema_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("prompts/schemas/profile-(id)___relationship.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_file)?)?;
    assert!(!run.answers.is_empty(), "{context}");
    for answer in &run.answers {
        assert_eq!(answer["constrained_by"], "json_object_schema", "{context}");
        let text = answer["text"].as_str().unwrap_or_default();
        let parsed: Value =
            serde_json::from_str(text).map_err(|error| format!("{error}: {text}\n{context}"))?;
        assert_eq!(validate(&schema, &parsed), [], "{text}\n{context}");
    }
    // Whatever failed, it was the items (the checks), not the server or the connection.
    for failed in run.report["failed"].as_array().into_iter().flatten() {
        let reason = failed["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(" of 2 items after "), "{reason}\n{context}");
    }
    Ok(())
}

/// Issue 14's target for this server: 2 valid items in one or two attempts.
#[test]
#[ignore = "not met with SmolLM2-135M: it names an item after the venture and, re-asked, writes its answer again (1 of 2 items in 3 attempts); run with --ignored"]
fn llama_cpp_python_gives_two_valid_items_in_one_or_two_attempts() -> TestResult {
    let Some(run) = run_generate()? else {
        return Ok(());
    };
    let context = &run.context;
    assert_eq!(run.exit_code, Some(0), "{context}");
    let draft = &run.report["drafts"][0];
    assert_eq!(
        draft["items"].as_array().map(Vec::len),
        Some(2),
        "{context}"
    );
    let attempts = draft["provenance"]["attempts"].as_u64().unwrap_or_default();
    assert!(
        (1..=2).contains(&attempts),
        "{attempts} attempts\n{context}"
    );
    assert_eq!(
        draft["provenance"]["constrained_by"], "json_object_schema",
        "{context}"
    );
    Ok(())
}
