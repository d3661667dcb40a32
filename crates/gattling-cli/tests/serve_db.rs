//! `gattling serve --db FILE.toml`: the example sensor served on `gattling controller`, read,
//! discovered and subscribed with the gatt command; bad files rejected before anything starts.

mod common;

use common::*;

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn gatt(transport: &str, args: &[&str]) -> std::process::Output {
    gattling()
        .args(["--transport", transport, "gatt", "--name", "cli-db"])
        .args(args)
        .output()
        .await
        .expect("run gattling gatt")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_example_sensor_and_notifies_a_counter() {
    let (mut controller, transport) = controller_server(&[]).await;
    let db = example("sensor.toml");
    let mut serve =
        serve(&transport, &["--name", "cli-db", "--db", &db, "--notify-every", "50", "Battery Level"]).await;

    let out = gatt(&transport, &["discover", "--read"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    for expected in [
        "service 180F (Battery)",
        "service 180D (Heart Rate)",
        "├── include 180F (Battery)",
        "├── include 7A110010-0000-4C1E-8A3B-5E4E50A0D0C0",
        "characteristic 2A38 (Body Sensor Location) value",
        "= 01",
        "descriptor 2904 (Characteristic Format) at",
        "characteristic 2A29 (Manufacturer Name String) value",
        "\"gattling\"",
        "descriptor 2901 (Characteristic User Description)",
        "\"sample interval (ms)\"",
        "7A11FFFF-0000-4C1E-8A3B-5E4E50A0D0C0",
    ] {
        assert!(tree.contains(expected), "missing {expected:?} in:\n{tree}");
    }

    let out = gatt(&transport, &["read", "7A110002-0000-4C1E-8A3B-5E4E50A0D0C0"]).await;
    assert!(text(&out.stdout).ends_with(": e803\n"), "{}", text(&out.stdout));
    // max_len = 2: a longer write is refused.
    let out = gatt(&transport, &["write", "7A110002-0000-4C1E-8A3B-5E4E50A0D0C0", "010203"]).await;
    assert!(!out.status.success());

    // The battery level counts up from 87 and is notified.
    let out = gatt(&transport, &["--json", "subscribe", "Battery Level", "--count", "3"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let values: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|v| u64::from_str_radix(v["value"].as_str().expect("hex"), 16).expect("hex"))
        .collect();
    assert_eq!(values.len(), 3);
    assert!(values.windows(2).all(|w| w[1] == w[0] + 1) && values[0] > 87, "{values:?}");

    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

#[tokio::test]
async fn bad_database_files_fail_before_anything_starts() {
    let dir = temp_dir("db");
    let cases: &[(&str, &str)] = &[
        ("[[service]]\nuuid = \"180D\"\nflavour = 1\n", ":3: unknown field `flavour`"),
        (
            "[[service]]\nuuid = \"180D\"\n[[service.characteristic]]\nuuid = \"2A37\"\nproperties = [\"read\", \"nottify\"]\n",
            ":5: service[0].characteristic[0].properties: unknown property \"nottify\"",
        ),
        (
            "[[service]]\nuuid = \"180D\"\n[[service.characteristic]]\nuuid = \"2A37\"\nproperties = [\"read\"]\n[[service.characteristic.descriptor]]\nuuid = \"2902\"\n",
            ":7: service[0].characteristic[0].descriptor[0].uuid: a Client Characteristic Configuration needs the notify or indicate property",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, body).expect("write");
        // Nothing listens on port 1: a started host would fail with a transport error instead.
        let out = gattling()
            .args(["--transport", "tcp-client:127.0.0.1:1", "serve", "--db", file.to_str().expect("utf-8")])
            .output()
            .await
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("bad{i}.toml{want}")), "{err}");
    }
    // --notify-every on a characteristic that cannot notify.
    let out = gattling()
        .args(["--transport", "tcp-client:127.0.0.1:1", "serve", "--db", &example("sensor.toml")])
        .args(["--notify-every", "100", "Body Sensor Location"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("2A38 (Body Sensor Location) has neither notify nor indicate"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uuid_several_characteristics_share_is_an_error_listing_them() {
    let dir = temp_dir("db-twice");
    let file = dir.join("twice.toml");
    let body = "[[service]]\nuuid = \"180F\"\n[[service.characteristic]]\nuuid = \"2A19\"\nproperties = [\"read\"]\nvalue = 1\n\
                [[service]]\nuuid = \"180F\"\n[[service.characteristic]]\nuuid = \"2A19\"\nproperties = [\"read\"]\nvalue = 2\n";
    std::fs::write(&file, body).expect("write");
    let (mut controller, transport) = controller_server(&[]).await;
    let mut serve = serve(&transport, &["--name", "cli-db", "--db", file.to_str().expect("utf-8")]).await;
    let out = gatt(&transport, &["read", "Battery Level"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("2 characteristics have UUID 2A19 (Battery Level) (value handles 0x"), "{err}");
    assert!(err.contains("give a handle instead"), "{err}");
    let _ = serve.kill().await;
    let _ = controller.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
