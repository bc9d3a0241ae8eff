//! Job output edge cases through the real daemon: invalid UTF-8, huge lines, a last line
//! without newline, and volume without loss.

use crate::support::TestEnv;

#[test]
fn invalid_utf8_and_a_1mb_line_are_logged_without_crashing() {
    let env = TestEnv::new()
        .job(
            "weird",
            "* * * * * *",
            "printf 'bad \\377\\376 bytes\\n'; head -c 1048576 /dev/zero | tr '\\0' x; printf '\\nno newline at end'",
        )
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=weird", "run finished", "state=succeeded"]);
    daemon.stop();
    let lines = daemon.lines();
    let run = lines
        .iter()
        .find(|l| l.contains("job=weird") && l.contains("run started"))
        .expect("started");
    let run_id = run
        .split("run_id=")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .expect("run id");
    let tag = format!("job=weird run_id={run_id} stream=stdout: ");
    let out: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(tag.as_str()).map(|(_, m)| m))
        .collect();
    assert_eq!(out[0], "bad \u{fffd}\u{fffd} bytes");
    // 1 MiB of `x` in 64 KiB pieces, then the unterminated last line.
    assert_eq!(
        out.len(),
        1 + 16 + 1,
        "{:?}",
        out.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert!(
        out[1..17]
            .iter()
            .all(|l| l.len() == 65_536 && l.bytes().all(|b| b == b'x'))
    );
    assert_eq!(out[17], "no newline at end");
}

#[test]
fn every_line_of_a_large_output_is_logged_in_order() {
    let env = TestEnv::new()
        .job("many", "* * * * * *", "seq 1 200000")
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=many", "run finished"]);
    daemon.stop();
    let lines = daemon.lines();
    let first_run = lines
        .iter()
        .find(|l| l.contains("job=many") && l.contains("run started"))
        .and_then(|l| l.split("run_id=").nth(1))
        .and_then(|s| s.split(':').next())
        .expect("run id")
        .to_owned();
    let tag = format!("run_id={first_run} stream=stdout: ");
    let numbers: Vec<u32> = lines
        .iter()
        .filter_map(|l| {
            l.split_once(tag.as_str())
                .map(|(_, n)| n.parse().expect("a number"))
        })
        .collect();
    assert_eq!(numbers.len(), 200_000);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u32 + 1),
        "in order, none lost"
    );
}
