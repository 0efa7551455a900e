use super::*;
use std::collections::HashMap;

fn env(m: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = m
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn settings_come_from_config_then_env_then_defaults() {
    let c = OtlpConfig::default();
    let s = c.resolve(env(&[])).unwrap();
    assert_eq!(s.url, "http://localhost:4318/v1/traces");
    assert_eq!(s.resource, vec![("service.name".into(), "llmux".into())]);
    let e = env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer x, x-team=a",
        ),
        ("OTEL_SERVICE_NAME", "gw"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
    ]);
    let s = c.resolve(&e).unwrap();
    assert_eq!(s.url, "http://c:4318/v1/traces");
    assert_eq!(s.headers[1], ("x-team".into(), "a".into()));
    assert!(s.resource.contains(&("service.name".into(), "gw".into())));
    assert!(s
        .resource
        .contains(&("deployment.environment".into(), "prod".into())));
    assert_eq!(s.timeout_ms, 500);
    let full = env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/v1/traces")]);
    assert_eq!(c.resolve(full).unwrap().url, "http://t:1/v1/traces");
    let c = OtlpConfig {
        endpoint: Some("http://mine:4318".into()),
        sampling_ratio: Some(0.5),
        ..OtlpConfig::default()
    };
    let s = c.resolve(&e).unwrap();
    assert_eq!(
        (s.url.as_str(), s.sampling_ratio),
        ("http://mine:4318/v1/traces", 0.5)
    );
    let bad = OtlpConfig {
        protocol: Some("grpc".into()),
        ..OtlpConfig::default()
    };
    assert!(bad
        .resolve(env(&[]))
        .unwrap_err()
        .contains("telemetry.otlp.protocol"));
    let bad = OtlpConfig {
        sampling_ratio: Some(2.0),
        ..OtlpConfig::default()
    };
    assert!(bad
        .resolve(env(&[]))
        .unwrap_err()
        .contains("sampling_ratio"));
}

#[test]
fn traceparent_round_trips_and_rejects_malformed() {
    let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let c = TraceContext::parse(h).unwrap();
    assert!(c.sampled);
    assert_eq!(c.header(), h);
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    ] {
        assert_eq!(TraceContext::parse(bad), None, "{bad}");
    }
    let unsampled = TraceContext::parse(&h.replace("-01", "-00")).unwrap();
    assert_eq!(context_for(Some(unsampled), 1.0), None);
    assert_eq!(context_for(Some(c), 0.0).unwrap().0, c.trace_id);
    assert!(context_for(None, 1.0).is_some() && context_for(None, 0.0).is_none());
}

#[test]
fn sampling_ratio_keeps_about_that_share() {
    let kept = (0..10_000)
        .filter(|_| sampled_by_ratio(&new_trace_id(), 0.25))
        .count();
    assert!((2_000..3_000).contains(&kept), "{kept}");
}

#[test]
fn a_dead_collector_drops_and_counts_without_waiting() {
    // Nothing listens on port 9 of loopback (discard): every export fails.
    let s = OtlpConfig {
        endpoint: Some("http://127.0.0.1:9".into()),
        max_queue: Some(16),
        flush_interval_ms: Some(10_000),
        ..OtlpConfig::default()
    }
    .resolve(|_| None)
    .unwrap();
    let t = Tracer::start(s).unwrap();
    let span = SpanData {
        trace_id: new_trace_id(),
        span_id: new_span_id(),
        parent: None,
        name: "chat x".into(),
        kind: SpanKind::Client,
        start_ns: 1,
        end_ns: 2,
        attributes: vec![],
        error: None,
    };
    let started = std::time::Instant::now();
    for _ in 0..10_000 {
        t.record(span.clone());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let c = t.counters();
    assert!(c.dropped >= 10_000 - 16 - 512, "{c:?}");
    t.shutdown();
    let c = t.counters();
    assert_eq!(c.exported, 0);
    assert_eq!(c.dropped, 10_000, "every span dropped and counted: {c:?}");
    assert!(c.export_errors >= 1);
}
