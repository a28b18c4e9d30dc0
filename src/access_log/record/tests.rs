use super::*;
use crate::routing::RouteKind;

#[test]
fn a_line_is_one_json_object_with_every_field() {
    let metrics = crate::metrics::Metrics::new();
    let config = crate::config::tests_support::two_tiers();
    let table = metrics.routes(&config);
    let slot = table.slot(RouteKind::Local, Some(0)).clone();
    let mut record = Record {
        request: RequestLine {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
            client: address_value("192.0.2.7:4711".parse().unwrap()),
            method: Method::POST,
            uri: "/a/b?c=d%20e".parse().unwrap(),
            version: Version::HTTP_2,
            host: Some(HeaderValue::from_static("Shop.Example")),
            user_agent: Some(Bytes::from_static(b"curl/8 \"x\" \xff")),
        },
        started: Instant::now(),
        request_id: Some(HeaderValue::from_static("abc")),
        request_id_generated: false,
        tenant: Some(Name::new("t1")),
        slot,
        server: Some("10.0.0.1:80".parse().unwrap()),
        status: 201,
        upstream: Some(Duration::from_micros(1_234)),
        bytes_in: Some(Arc::new(AtomicU64::new(5))),
        bytes_out: 7,
        queued: Some(Duration::from_micros(2_500)),
        bounded: None,
        preview: false,
    };
    let line = record.line(true);
    assert!(!line.contains(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["time"], "1970-01-01T00:00:01.500Z");
    assert_eq!(v["client"], "192.0.2.7:4711");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["target"], "/a/b?c=d%20e");
    assert_eq!(v["version"], "HTTP/2");
    assert_eq!(v["host"], "Shop.Example");
    assert_eq!(v["tenant"], "t1");
    assert_eq!(v["route"], "local");
    assert_eq!(v["tier"], "basic");
    assert_eq!(v["pool"], "web");
    assert_eq!(v["server"], "10.0.0.1:80");
    assert_eq!(v["status"], 201);
    assert_eq!(v["bytes_in"], 5);
    assert_eq!(v["bytes_out"], 7);
    assert_eq!(v["upstream_ms"], 1.234);
    assert_eq!(v["queue_ms"], 2.5);
    assert_eq!(v["bounded"], serde_json::Value::Null);
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["request_id"], "abc");
    assert_eq!(v["user_agent"], "curl/8 \"x\" \u{fffd}");
    assert_eq!(v["completed"], true);
    // A request refused by its site's limits, not queued.
    (record.queued, record.bounded) = (None, Some("rate"));
    let v: serde_json::Value = serde_json::from_slice(&record.line(true)).unwrap();
    assert_eq!(v["queue_ms"], serde_json::Value::Null);
    assert_eq!(v["bounded"], "rate");
    // The second is cached; the milliseconds are not.
    let mut later = Record {
        request_id: Some(HeaderValue::from_static("00ff")),
        request_id_generated: true,
        request: RequestLine {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_007),
            client: address_value("[2001:db8::1]:443".parse().unwrap()),
            ..record.request
        },
        ..record
    };
    later.tenant = Some(Name::new("a-tenant-name-longer-than-31-bytes-é"));
    let v: serde_json::Value = serde_json::from_slice(&later.line(true)).unwrap();
    assert_eq!(v["tenant"], "a-tenant-name-longer-than-31-bytes-é");
    later.tenant = Some(Name::new("exactly-thirty-one-bytes-lon-é"));
    let v: serde_json::Value = serde_json::from_slice(&later.line(true)).unwrap();
    assert_eq!(v["tenant"], "exactly-thirty-one-bytes-lon-é");
    assert_eq!(v["time"], "1970-01-01T00:00:01.007Z");
    assert_eq!(v["client"], "[2001:db8::1]:443");
    assert_eq!(v["request_id"], "00ff");
    later.request.time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_547_200);
    let v: serde_json::Value = serde_json::from_slice(&later.line(true)).unwrap();
    assert_eq!(v["time"], "2025-12-01T00:00:00.000Z");
    let rejected = Record {
        slot: table.slot(RouteKind::Rejected, None).clone(),
        tenant: None,
        server: None,
        upstream: None,
        ..later
    };
    let v: serde_json::Value = serde_json::from_slice(&rejected.line(false)).unwrap();
    assert_eq!(v["route"], "rejected");
    assert!(v["tier"].is_null() && v["pool"].is_null() && v["tenant"].is_null());
    assert!(v["upstream_ms"].is_null());
    assert_eq!(v["completed"], false);
}
