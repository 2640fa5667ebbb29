use super::*;

#[test]
fn durations_and_numbers() {
    assert_eq!(duration(500), "500ms");
    assert_eq!(duration(2000), "2s");
    assert_eq!(millis(0.0004), 0);
    assert_eq!(seconds(&Json::String(" 0.25 ".into())), Some(0.25));
    assert_eq!(seconds(&Json::Number((-1).into())), None);
    assert_eq!(integer(&Json::Number(serde_json::Number::from_f64(3.0).unwrap())), Some(3));
    assert_eq!(integer(&Json::Number(serde_json::Number::from_f64(3.5).unwrap())), None);
    assert_eq!(field("services", "a.b"), "services.\"a.b\"");
    assert_eq!(key("X-Health"), "X-Health");
    assert_eq!(key("k8s.io/zone"), "\"k8s.io/zone\"");
}

/// Objects keep the file's order; a key given twice keeps its first place and its last value,
/// and is reported; what is not taken is left for the caller to report.
#[test]
fn objects_keep_their_order_and_every_field_is_accounted_for() {
    let mut out = Report::default();
    let mut top = open(Tool::Nerve, "f.json", r#"{"z": 1, "a": 2, "z": 3, "m": [true, null]}"#, &mut out).unwrap();
    assert_eq!(top.take("a"), Some(Json::Number(2.into())));
    assert_eq!(top.peek("m").map(Json::shown).as_deref(), Some("[true,null]"));
    let rest: Vec<(String, String)> = top.rest().into_iter().map(|(k, v)| (k, v.shown())).collect();
    assert_eq!(rest, [("z".to_owned(), "3".to_owned()), ("m".to_owned(), "[true,null]".to_owned())]);
    let warnings: Vec<String> = out.into_warnings().iter().map(Warning::to_string).collect();
    assert_eq!(warnings, ["f.json: z: given twice: the last value is used, as Ruby does"]);
}

#[test]
fn zookeeper_hosts_default_port_and_chroot() {
    let mut out = Report::default();
    let value = Json::Array(vec![Json::String(" zk1/axon ".into()), Json::String("zk2:2182/axon".into())]);
    let hosts = ZkHosts::parse(value, "f.json", "zk_hosts", &mut out).unwrap();
    assert_eq!(hosts.connect(), "zk1:2181,zk2:2182/axon");
    let warnings: Vec<String> = out.into_warnings().iter().map(Warning::to_string).collect();
    assert_eq!(warnings, ["f.json: zk_hosts[0]: \"zk1/axon\" has no port: \"zk1:2181\" written (ZooKeeper's default)"]);
    // One connection string, in another order: the same ensemble.
    let other =
        ZkHosts::parse(Json::String("zk2:2182,zk1:2181/axon".into()), "f.json", "hosts", &mut Report::default());
    assert!(other.is_some_and(|other| other.same_ensemble(&hosts)));
}

#[test]
fn names_axon_accepts() {
    assert_eq!(clean_name("web site/1", 64), "web_site_1");
    assert_eq!(clean_name("", 64), "service");
    assert_eq!(clean_name(&"s".repeat(70), 64).len(), 64);
    let taken: BTreeSet<String> = ["web".to_owned(), "web_2".to_owned()].into();
    assert_eq!(unique("web", &taken, usize::MAX), "web_3");
    assert_eq!(unique("api", &taken, usize::MAX), "api");
    assert_eq!(suffixed("abcdef", "_2", 4), "ab_2");
}
