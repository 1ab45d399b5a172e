//! The `fabflow` binary as a user runs it: `check-config`, `run` with a
//! graceful stop on SIGTERM, `tokens create` and `orders import`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fabflow");

fn fabflow(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run fabflow")
}

#[test]
fn check_config_accepts_the_shipped_files_and_names_every_problem() {
    for file in ["config/demo.toml", "config/production.example.toml"] {
        let out = fabflow(&["check-config", file]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "time_scale = -1.0\n[[couriers]]\nid = \"c\"\nzone = \"z\"\nlat = 95.0\nlon = 13.0\ncapacity = 1\n",
    )
    .expect("write");
    let out = fabflow(&["check-config", bad.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("time_scale: must be 0.001..=100000, got -1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("couriers.c.zone: unknown zone \"z\""),
        "{stderr}"
    );
    assert!(stderr.contains("bad.toml"), "{stderr}");
    // HTTP and the embedded broker on one address; a SKU no machine can make.
    let demo = std::fs::read_to_string("config/demo.toml").expect("demo config");
    let clash = demo.replace("listen = \"127.0.0.1:1883\"", "listen = \"127.0.0.1:8080\"")
        + "\n[[machines]]\nid = \"p1\"\nfactory = \"centre\"\nmodel = \"acme-dtg-200\"\naddress = \"127.0.0.1:9\"\n";
    let clash_path = dir.path().join("clash.toml");
    std::fs::write(&clash_path, clash).expect("write");
    let out = fabflow(&["check-config", clash_path.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mqtt.listen: 127.0.0.1:8080 is also http.listen"),
        "{stderr}"
    );
    let no_press = demo.clone()
        + "\n[[machines]]\nid = \"p1\"\nfactory = \"centre\"\nmodel = \"acme-dtg-200\"\naddress = \"127.0.0.1:9\"\n";
    std::fs::write(&clash_path, no_press).expect("write");
    let out = fabflow(&["check-config", clash_path.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "skus.tee-black-m.route[1].process: no configured machine can do \"heat_press\""
        ),
        "{stderr}"
    );
    // An unknown model is named in the same run as a bad value.
    let both = demo.replace("time_scale = 600.0", "time_scale = -5.0")
        + "\n[[machines]]\nid = \"x1\"\nfactory = \"centre\"\nmodel = \"nobody-makes-this\"\naddress = \"127.0.0.1:9\"\n";
    std::fs::write(&clash_path, both).expect("write");
    let out = fabflow(&["check-config", clash_path.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("time_scale: must be"), "{stderr}");
    assert!(
        stderr.contains("machines.x1.model: unknown machine model \"nobody-makes-this\""),
        "{stderr}"
    );
    // And beside an unknown key, which stops the file from reading at all.
    let shape = demo.replace("time_scale = 600.0", "time_scale = 600.0\ncolour = 1")
        + "\n[[machines]]\nid = \"x1\"\nfactory = \"centre\"\nmodel = \"nobody-makes-this\"\naddress = \"127.0.0.1:9\"\n";
    std::fs::write(&clash_path, shape).expect("write");
    let out = fabflow(&["check-config", clash_path.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("colour: unknown key"), "{stderr}");
    assert!(
        stderr.contains("machines.x1.model: unknown machine model \"nobody-makes-this\""),
        "{stderr}"
    );
    let out = fabflow(&["check-config", "no/such/file.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.toml"));
}

#[test]
fn check_config_accepts_the_shop_planner_and_names_a_wrong_one() {
    let demo = std::fs::read_to_string("config/demo.toml").expect("demo config");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shop.toml");
    let with = |planner: &str| {
        demo.replacen(
            "[scheduler]\n",
            &format!("[scheduler]\nplanner = \"{planner}\"\nplan_budget_ms = 80\n"),
            1,
        )
    };
    assert_ne!(with("shop"), demo, "the demo has a [scheduler] section");
    std::fs::write(&path, with("shop")).expect("write");
    let out = fabflow(&["check-config", path.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&path, with("fastest")).expect("write");
    let out = fabflow(&["check-config", path.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scheduler.planner: unknown variant `fastest`"),
        "{stderr}"
    );
    assert!(stderr.contains("shop.toml"), "{stderr}");
}

/// The status code of `GET path` with a bearer token (0 if no answer).
/// `line` without its ANSI colour sequences (`ESC [ ... m`).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn status_of(url: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let Some(address) = url.strip_prefix("http://") else {
        return 0;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return 0;
    }
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

#[test]
fn tokens_refuse_unknown_scopes_and_are_listed_without_their_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let config = config.to_str().expect("path");
    for (role, scope, expected) in [
        ("operator", "nroth", "unknown factories [\"nroth\"]"),
        ("courier", "van-99", "unknown courier \"van-99\""),
        ("admin", "acme", "an admin's scope is `*`"),
        ("brand", "acme corp", "a brand id is"),
    ] {
        let out = fabflow(&[
            "tokens", "create", "--config", config, "--role", role, "--scope", scope,
        ]);
        assert!(!out.status.success(), "{role} {scope}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{role} {scope}: {stderr}");
    }
    let out = fabflow(&[
        "tokens",
        "create",
        "--config",
        config,
        "--role",
        "operator",
        "--scope",
        "north,centre",
        "--name",
        "counter-tablet",
        "--expires-in-days",
        "30",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = fabflow(&["tokens", "list", "--config", config]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(listing.contains("counter-tablet"), "{listing}");
    assert!(listing.contains("north,centre"), "{listing}");
    assert!(
        !listing.contains(&token),
        "the token itself is never shown again"
    );
    let out = fabflow(&["tokens", "revoke", "--config", config, "0123456789ab"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no live token"));
}

/// Kills the daemon if the test fails before it stopped it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let demo = std::fs::read_to_string("config/demo.toml").expect("demo config");
    let db = dir.join("run.db");
    let text = demo
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:1883\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "sqlite://fabflow-demo.db",
            &format!("sqlite://{}", db.display()),
        );
    // Machines nobody answers for: orders are accepted; the daemon keeps trying.
    // (One per process the SKUs need; the 3D printer shares unit id 1 with
    // the DTG printer, so it gets its own address.)
    let machines = [
        ("acme-dtg-200", "127.0.0.1:9"),
        ("heatwave-hp-40", "127.0.0.1:9"),
        ("lumen-uv-6", "127.0.0.1:9"),
        ("forge-fdm-3", "127.0.0.1:10"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (model, address))| {
        format!("\n[[machines]]\nid = \"m{i}\"\nfactory = \"centre\"\nmodel = \"{model}\"\naddress = \"{address}\"\n")
    })
    .collect::<String>();
    let path = dir.join("run.toml");
    std::fs::write(&path, text + &machines).expect("write config");
    path
}

#[test]
fn run_serves_the_api_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let config = config.to_str().expect("path");
    // A token made by the CLI before the daemon starts works against it.
    let out = fabflow(&[
        "tokens",
        "create",
        "--config",
        config,
        "--role",
        "brand",
        "--scope",
        "cli-brand",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("ffb_"), "{token}");

    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["run", "--config", config])
            // tower_http's line per response, to see each request's ids.
            .env("RUST_LOG", "info,tower_http=debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:") {
                let url: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = url_tx.send(url);
            }
            lines.push(line);
        }
        lines
    });
    let url = url_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("daemon prints its URL");

    // Import an event through the CLI client.
    let csv = dir.path().join("event.csv");
    std::fs::write(
        &csv,
        "external_ref,customer_name,lat,lon,sku,quantity\nm-1,Ada,52.52,13.40,tee-black-m,1\nm-1,Ada,52.52,13.40,mug-white,1\nm-2,Bob,52.50,13.42,tote-natural,2\n",
    )
    .expect("write csv");
    let out = fabflow(&[
        "orders",
        "import",
        csv.to_str().expect("path"),
        "--url",
        &url,
        "--token",
        &token,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 2 orders"), "{stdout}");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "external_ref,customer_name,lat,lon,sku,quantity\nx,Ada,52.52,13.40,hat,1\n",
    )
    .expect("write");
    let out = fabflow(&[
        "orders",
        "import",
        bad.to_str().expect("path"),
        "--url",
        &url,
        "--token",
        &token,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("line 2: /lines/0/sku unknown SKU \"hat\""),
        "{stdout}"
    );
    assert!(stdout.contains("nothing imported"), "{stdout}");

    // Requests naming an order or a machine log it with their lines.
    assert_eq!(status_of(&url, "/v1/orders/probe-order-1", &token), 404);
    status_of(
        &url,
        "/v1/machines/probe-machine/maintenance-windows",
        &token,
    );

    // Revoked by the CLI while the daemon runs (and has the token cached):
    // refused within a few seconds.
    assert_eq!(status_of(&url, "/v1/orders", &token), 200);
    let out = fabflow(&["tokens", "revoke", "--config", config, &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&url, "/v1/orders", &token) != 401 {
        assert!(Instant::now() < deadline, "a revoked token still works");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: a graceful stop, exit status 0.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = reader.join().expect("reader");
    assert!(status.success(), "exit {status:?}: {}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("stopped")),
        "{}",
        lines.join("\n")
    );
    let plain: Vec<String> = lines.iter().map(|l| without_ansi(l)).collect();
    let logged = |text: &str| plain.iter().any(|l| l.contains(text));
    assert!(logged("order.id=probe-order-1"), "{}", lines.join("\n"));
    assert!(logged("machine.id=probe-machine"), "{}", lines.join("\n"));
    // The import route names no order: no made-up id from its path.
    assert!(logged("path=/v1/orders/import"), "{}", lines.join("\n"));
    assert!(!logged("order.id=import"), "{}", lines.join("\n"));
}

#[test]
fn machine_models_are_read_from_the_configured_profile_dirs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).expect("mkdir");
    // A model of another maker, as a file: no rebuild.
    let acme = std::fs::read_to_string("adapters/profiles/acme-dtg-200.toml").expect("profile");
    std::fs::write(
        profiles.join("stitchco-em-12.toml"),
        acme.replace("model = \"acme-dtg-200\"", "model = \"stitchco-em-12\""),
    )
    .expect("write profile");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = format!(
        "profile_dirs = [\"profiles\"]\n{text}\n[[machines]]\nid = \"embroidery-1\"\nfactory = \"north\"\nmodel = \"stitchco-em-12\"\naddress = \"127.0.0.1:15020\"\n"
    );
    std::fs::write(&config, &text).expect("write config");
    let path = config.to_str().expect("path");
    let out = fabflow(&["check-config", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broken file is named with its key; a built-in model defined again
    // is refused; two machines on one address and unit id are refused.
    std::fs::write(
        profiles.join("broken.toml"),
        acme.replace("model = \"acme-dtg-200\"", "model = \"broken-1\"")
            .replace("word_order = \"little\"", "word_order = \"sideways\""),
    )
    .expect("write");
    std::fs::write(profiles.join("again.toml"), &acme).expect("write");
    let twin = "\n[[machines]]\nid = \"embroidery-2\"\nfactory = \"north\"\nmodel = \"stitchco-em-12\"\naddress = \"127.0.0.1:15020\"\n";
    std::fs::write(&config, format!("{text}{twin}")).expect("write config");
    let out = fabflow(&["check-config", path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.toml: line ") && stderr.contains("sideways"),
        "{stderr}"
    );
    assert!(
        stderr.contains("again.toml: model: model `acme-dtg-200` is already defined"),
        "{stderr}"
    );
    std::fs::remove_file(profiles.join("broken.toml")).expect("rm");
    std::fs::remove_file(profiles.join("again.toml")).expect("rm");
    let out = fabflow(&["check-config", path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("machines.embroidery-2.address: 127.0.0.1:15020 unit 1 is already machine embroidery-1's"),
        "{stderr}"
    );
}

/// The `threadline-x6` walk-through profile of adapters/README.md, as given there.
fn readme_threadline_profile() -> String {
    let readme = std::fs::read_to_string("adapters/README.md").expect("README");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("model = \"threadline-x6\""))
        .expect("the README gives the threadline-x6 profile")
        .to_string();
    block
        .lines()
        .map(|line| line.strip_prefix("   ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_config_reads_profiles_without_acknowledge_and_names_their_new_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).expect("mkdir");
    let profile = readme_threadline_profile();
    std::fs::write(profiles.join("threadline-x6.toml"), &profile).expect("write profile");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "profile_dirs = [\"profiles\"]\n{text}\n[[machines]]\nid = \"embroidery-1\"\nfactory = \"north\"\nmodel = \"threadline-x6\"\naddress = \"127.0.0.1:15021\"\n"
        ),
    )
    .expect("write config");
    let path = config.to_str().expect("path");
    let out = fabflow(&["check-config", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without its echo, without a valid counter type, with a silly timeout:
    // every problem, each with its file and key.
    let broken = profile
        .replace("[signals.token_echo]", "[signals.unused_echo]")
        .replace(
            "address = 10\ntype = \"u16\"",
            "address = 10\ntype = \"i16\"",
        )
        .replace("command_timeout_ms = 5000", "command_timeout_ms = 5");
    assert_ne!(broken, profile);
    std::fs::write(profiles.join("threadline-x6.toml"), broken).expect("write profile");
    let out = fabflow(&["check-config", path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "threadline-x6.toml: signals.unused_echo: unknown signal",
        "threadline-x6.toml: commands.acknowledge: may be left out only when the machine echoes the job token it runs (`signals.token_echo`)",
        "threadline-x6.toml: signals.good_count.counts: a cumulative counter must be u16 or u32 without scale (it wraps at the register width)",
        "threadline-x6.toml: command_timeout_ms: must be 100..=3600000 (milliseconds), got 5",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
}

#[test]
fn check_config_reads_mqtt_profiles_and_names_their_keys_and_machines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).expect("mkdir");
    // A copy of the generic JSON machine under another model name.
    let generic = std::fs::read_to_string("adapters/profiles/generic-json.toml").expect("profile");
    let profile = generic.replace("model = \"generic-json\"", "model = \"presso-j2\"");
    std::fs::write(profiles.join("presso-j2.toml"), &profile).expect("write profile");
    let text = std::fs::read_to_string(&config).expect("config");
    let machine = "\n[[machines]]\nid = \"press-j\"\nfactory = \"north\"\nmodel = \"presso-j2\"\nserial = \"PJ-0042\"\n";
    std::fs::write(
        &config,
        format!("profile_dirs = [\"profiles\"]\n{text}{machine}"),
    )
    .expect("write config");
    let path = config.to_str().expect("path");
    let out = fabflow(&["check-config", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broken MQTT profile: every problem with its file and key.
    let broken = profile
        .replace(
            "command_topic = \"fabflow/v1/machines/{serial}/command\"",
            "command_topic = \"fabflow/v1/machines/all/command\"",
        )
        .replace("pointer = \"/state\"", "pointer = \"state\"")
        .replace("quantity = \"{quantity}\"", "quantity = 1")
        .replace("report_timeout_ms = 5000", "report_timeout_ms = 5");
    assert_ne!(broken, profile);
    std::fs::write(profiles.join("presso-j2.toml"), broken).expect("write profile");
    let out = fabflow(&["check-config", path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "presso-j2.toml: command_topic: must contain `{serial}` (each machine its own topic)",
        "presso-j2.toml: signals.state.pointer: must be empty or start with `/` (RFC 6901), got `state`",
        "presso-j2.toml: commands.start.payload: must carry `{quantity}` somewhere",
        "presso-j2.toml: report_timeout_ms: must be 200..=3600000 (milliseconds), got 5",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }

    // The machines: an MQTT machine has no address, a serial that can be a
    // topic level, and a report topic of its own.
    std::fs::write(profiles.join("presso-j2.toml"), &profile).expect("write profile");
    let machines = "\n[[machines]]\nid = \"press-k\"\nfactory = \"north\"\nmodel = \"presso-j2\"\nserial = \"PJ-0042\"\n\
        \n[[machines]]\nid = \"press-l\"\nfactory = \"north\"\nmodel = \"presso-j2\"\naddress = \"127.0.0.1:15030\"\n\
        \n[[machines]]\nid = \"press-m\"\nfactory = \"north\"\nmodel = \"presso-j2\"\nserial = \"a/b\"\n";
    std::fs::write(
        &config,
        format!("profile_dirs = [\"profiles\"]\n{text}{machine}{machines}"),
    )
    .expect("write config");
    let out = fabflow(&["check-config", path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "machines.press-k.serial: report topic fabflow/v1/machines/PJ-0042/report is already machine press-j's",
        "machines.press-l.address: not for an MQTT machine",
        "machines.press-m.serial: \"a/b\" must not contain '/', '+', '#', '$' or NUL (it is a topic level)",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
}

#[test]
fn run_survives_running_out_of_file_handles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let config = config.to_str().expect("path");
    // The daemon gets few file handles; the test, its usual many.
    let mut child = KillOnDrop(
        Command::new("sh")
            .args([
                "-c",
                "ulimit -n 200 && exec \"$0\" run --config \"$1\"",
                BIN,
                config,
            ])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (exhausted_tx, exhausted_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:") {
                let url: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = url_tx.send(url);
            }
            if line.contains("accepting a connection failed") {
                let _ = exhausted_tx.send(line);
            }
        }
    });
    let url = url_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("daemon prints its URL");
    assert_eq!(status_of(&url, "/healthz", ""), 200);
    // More idle connections than the daemon has handles.
    let address = url.trim_start_matches("http://").to_string();
    let hoard: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    let exhausted = exhausted_rx.recv_timeout(Duration::from_secs(30));
    assert!(
        exhausted.is_ok(),
        "the daemon never ran out of handles ({} connections held)",
        hoard.len()
    );
    assert!(
        exhausted
            .as_ref()
            .is_ok_and(|l| l.contains("Too many open files")),
        "{exhausted:?}"
    );
    assert!(matches!(child.0.try_wait(), Ok(None)), "the daemon exited");
    // Handles come back: the daemon serves again, without a restart.
    drop(hoard);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&url, "/healthz", "") != 200 {
        assert!(
            Instant::now() < deadline,
            "no answer after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(matches!(child.0.try_wait(), Ok(None)));
    drop(child);
    let _ = reader.join();
}

#[test]
fn check_config_names_the_matrix_file_and_what_is_wrong_with_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = std::fs::read_to_string("config/demo.toml").expect("demo config");
    let config = dir.path().join("roads.toml");
    std::fs::write(
        &config,
        demo + "\n[routing]\nmatrix_file = \"roads.json\"\n",
    )
    .expect("write");
    let check = || {
        let out = fabflow(&["check-config", config.to_str().expect("path")]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let matrix = dir.path().join("roads.json");
    // Missing, malformed, and without the places of its rows.
    let (ok, stderr) = check();
    assert!(!ok);
    assert!(stderr.contains("routing.matrix_file: "), "{stderr}");
    assert!(stderr.contains("roads.json: cannot read"), "{stderr}");
    assert!(stderr.contains("roads.toml"), "{stderr}");
    std::fs::write(&matrix, "{\"durations\": [[0, 1], [1]]").expect("write");
    let (ok, stderr) = check();
    assert!(!ok);
    assert!(
        stderr.contains("roads.json: OSRM table at byte"),
        "{stderr}"
    );
    std::fs::write(&matrix, "{\"durations\": [[0, 1], [1, 0]]}").expect("write");
    let (ok, stderr) = check();
    assert!(!ok);
    assert!(stderr.contains("no `sources`"), "{stderr}");
    // A table with its places: accepted.
    std::fs::write(
        &matrix,
        r#"{"code": "Ok", "durations": [[0, 60], [60, 0]],
            "sources": [{"location": [13.40, 52.52]}, {"location": [13.42, 52.54]}]}"#,
    )
    .expect("write");
    let (ok, stderr) = check();
    assert!(ok, "{stderr}");
}
