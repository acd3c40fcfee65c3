//! The HTML report, opened in a real browser: headless Chromium (Debian's
//! `chromium` package) loads the page from disk, its DOM after load must
//! hold every chart's series, and a screenshot must show them painted in
//! their colours. Without Chromium the test says `SKIPPED` and passes,
//! unless `AUTHD_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes it fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{authload, short};
use crate::support::{spawn_app, test_name, Backend};

/// The first series colours of the report's palette (`src/bin/authload/svg.rs`).
const FIRST_SERIES_RGB: [u8; 3] = [0x00, 0x72, 0xb2];
const SECOND_SERIES_RGB: [u8; 3] = [0xd5, 0x5e, 0x00];

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on `page` with `extra` flags; `None` if it
/// cannot run here (reported, or a failure when the browser is required).
async fn chromium(page: &Path, profile: &Path, extra: &[String]) -> Option<std::process::Output> {
    let required = std::env::var("AUTHD_REQUIRE_BROWSER").as_deref() == Ok("1");
    let skip = |why: String| {
        if required {
            panic!("{why} and AUTHD_REQUIRE_BROWSER=1 ({})", test_name());
        }
        // Straight to the process's stderr: a skip must show in a passing run.
        let _ = writeln!(std::io::stderr(), "SKIPPED ({why}): {}", test_name());
        None
    };
    let Some(binary) = find_chromium() else {
        return skip("no chromium on PATH".into());
    };
    let mut command = tokio::process::Command::new(&binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(120), command.output()).await {
        Ok(Ok(output)) if output.status.success() => Some(output),
        Ok(Ok(output)) => skip(format!(
            "chromium failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
        Ok(Err(e)) => skip(format!("chromium cannot start: {e}")),
        Err(_) => skip("chromium did not finish within 120 s".into()),
    }
}

/// RGB pixels of a PNG screenshot, with its width.
fn pixels(png_bytes: &[u8]) -> (Vec<[u8; 3]>, u32) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader.next_frame(&mut buffer).expect("a PNG frame");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "colour screenshot expected, got {:?}",
        info.color_type
    );
    let pixels = buffer[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (pixels, info.width)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_its_charts_in_chromium() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    // Several operations (the mixed loop) and a threshold in the report.
    let mut args = short(&app.address, "mixed", "2");
    let page_arg = page.display().to_string();
    args.extend(["--report", &page_arg, "--threshold", "p99<1h"]);
    authload(&args).await.ok_json();

    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing fetched from anywhere.
    for external in [
        "<script src",
        "<link",
        "@import",
        "url(",
        "src=\"http",
        "href=\"http",
    ] {
        assert!(!html.contains(external), "the report refers to {external}");
    }

    let profile = dir.path().join("profile");
    let Some(dom) = chromium(&page, &profile, &["--dump-dom".into()]).await else {
        return;
    };
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The throughput chart: refresh, authorize and errors; latency: p50
    // and p99; percentiles: refresh, authorize and all.
    for (chart, series) in [
        ("throughput", &["refresh", "authorize", "errors"][..]),
        ("latency", &["p50", "p99"][..]),
        ("percentiles", &["refresh", "authorize", "all"][..]),
    ] {
        let start = dom
            .find(&format!("<svg id=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart} chart in the DOM"));
        let svg = &dom[start..start + dom[start..].find("</svg>").unwrap()];
        for name in series {
            let at = svg
                .find(&format!("data-series=\"{name}\""))
                .unwrap_or_else(|| panic!("no {name} series in the {chart} chart"));
            // A drawn line: a polyline with at least two points.
            let element = &svg[svg[..at].rfind("<polyline").unwrap()..];
            let points = element.split("points=\"").nth(1).unwrap();
            let points = &points[..points.find('"').unwrap()];
            assert!(
                points.split_whitespace().count() >= 2,
                "{chart}/{name} has too few points: {points:?}"
            );
        }
    }
    assert!(dom.contains("id=\"no-errors\""), "a clean run says so");
    assert!(dom.contains("p99&lt;1h") && dom.contains("passed"));

    let shot = dir.path().join("shot.png");
    let flags = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1000,2600".to_string(),
    ];
    let Some(_) = chromium(&page, &profile, &flags).await else {
        return;
    };
    let (pixels, width) = pixels(&std::fs::read(&shot).expect("a screenshot"));
    assert_eq!(width, 1000);
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| **p == rgb).count();
    let white = count([255, 255, 255]);
    assert!(white < pixels.len(), "the screenshot is blank");
    // Lines 3 px wide and hundreds of px long, in several charts.
    let (first, second) = (count(FIRST_SERIES_RGB), count(SECOND_SERIES_RGB));
    assert!(
        first > 500,
        "first-series colour painted on {first} pixels only"
    );
    assert!(
        second > 500,
        "second-series colour painted on {second} pixels only"
    );
}
