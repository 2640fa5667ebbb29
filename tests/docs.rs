//! The documentation's configuration examples are configurations the daemons accept. Every
//! fenced block whose info string starts with `toml` in README.md and docs/*.md must name the
//! daemon it configures (```` ```toml registrar ```` or ```` ```toml spoa ````) and is validated
//! by that daemon's own parser, the one `--check` runs: a renamed field, a value out of range or
//! a fragment that is not a whole file fails here, with the file and the line. No process, no
//! network: the files are read and parsed.

use std::path::{Path, PathBuf};

use axon_core::config::ConfigError;

/// A fenced code block of a Markdown file.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    /// The opening fence's line, from 1.
    line: usize,
    /// The info string, trimmed.
    info: String,
    /// The lines between the fences, without the fence's indentation.
    text: String,
}

/// The fenced code blocks of `markdown` (backticks or tildes, three or more, indented or not, as
/// inside list items); `Err(line)` for a fence opened at `line` and never closed.
fn fenced_blocks(markdown: &str) -> Result<Vec<Block>, usize> {
    struct Open {
        line: usize,
        indent: usize,
        marker: char,
        width: usize,
        info: String,
        text: String,
    }
    let fence = |line: &str| -> Option<(usize, char, usize, String)> {
        let rest = line.trim_start_matches(' ');
        let marker = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let width = rest.chars().take_while(|c| *c == marker).count();
        let info = rest[width..].trim();
        // A backtick fence's info string holds no backtick: "```` ```toml ```` blocks" is text.
        (width >= 3 && !(marker == '`' && info.contains('`')))
            .then(|| (line.len() - rest.len(), marker, width, info.to_owned()))
    };
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, fence(line)) {
            (None, Some((indent, marker, width, info))) => {
                open = Some(Open { line: i + 1, indent, marker, width, info, text: String::new() });
            }
            (Some(block), Some((_, marker, width, rest)))
                if marker == block.marker && width >= block.width && rest.is_empty() =>
            {
                blocks.push(Block {
                    line: block.line,
                    info: block.info.clone(),
                    text: std::mem::take(&mut block.text),
                });
                open = None;
            }
            (Some(block), _) => {
                let strip = line.len() - line.trim_start_matches(' ').len();
                block.text.push_str(&line[strip.min(block.indent)..]);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    match open {
        Some(block) => Err(block.line),
        None => Ok(blocks),
    }
}

/// Which daemon a block's info string names, if it is a TOML block: `Some(Ok(daemon))`,
/// `Some(Err(()))` for a TOML block without one of the two tags, `None` for any other block.
fn toml_daemon(info: &str) -> Option<Result<&'static str, ()>> {
    let mut words = info.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("toml") {
        return None;
    }
    Some(match (words.next(), words.next()) {
        (Some("registrar"), None) => Ok("registrar"),
        (Some("spoa"), None) => Ok("spoa"),
        _ => Err(()),
    })
}

/// What was checked in one or more files.
#[derive(Debug, Default, PartialEq, Eq)]
struct Checked {
    registrar: usize,
    spoa: usize,
    /// One line per failing block: file, line, what is wrong.
    failures: Vec<String>,
}

/// Validates every TOML block of `markdown`, which `file` names in failures.
fn check_markdown(file: &str, markdown: &str, checked: &mut Checked) {
    let blocks = match fenced_blocks(markdown) {
        Ok(blocks) => blocks,
        Err(line) => {
            checked.failures.push(format!("{file}:{line}: this fence is never closed"));
            return;
        }
    };
    for block in blocks {
        let daemon = match toml_daemon(&block.info) {
            None => continue,
            Some(Ok(daemon)) => daemon,
            Some(Err(())) => {
                checked.failures.push(format!(
                    "{file}:{}: a TOML block must say which daemon it configures: ```toml registrar or ```toml spoa, not ```{}",
                    block.line, block.info
                ));
                continue;
            }
        };
        let name = Path::new(file);
        let result = match daemon {
            "registrar" => {
                checked.registrar += 1;
                axon_registrar::Config::parse(name, &block.text).map(drop)
            }
            _ => {
                checked.spoa += 1;
                axon_spoa::Config::parse(name, &block.text).map(drop)
            }
        };
        if let Err(err) = result {
            checked.failures.push(describe(file, &block, daemon, &err));
        }
    }
}

/// A failure, located in the Markdown file: a syntax error at its own line, anything else at
/// the block's opening fence.
fn describe(file: &str, block: &Block, daemon: &str, err: &ConfigError) -> String {
    match err {
        ConfigError::Syntax { line, field, message, .. } if *line > 0 => {
            format!("{file}:{}: ```toml {daemon} block of line {}: `{field}`: {message}", block.line + line, block.line)
        }
        ConfigError::Syntax { field, message, .. } => {
            format!("{file}:{}: ```toml {daemon} block: `{field}`: {message}", block.line)
        }
        ConfigError::Invalid { field, value, expected, .. } => {
            format!("{file}:{}: ```toml {daemon} block: `{field}` = {value}: expected {expected}", block.line)
        }
        ConfigError::Read { .. } => format!("{file}:{}: ```toml {daemon} block: {err}", block.line),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the harness crate lives in the workspace").to_owned()
}

/// README.md and every docs/*.md, as paths relative to the workspace.
fn documentation() -> Vec<String> {
    let root = workspace();
    let mut files = vec!["README.md".to_owned()];
    let docs = std::fs::read_dir(root.join("docs")).unwrap_or_else(|e| panic!("{}: {e}", root.join("docs").display()));
    let mut pages: Vec<String> = docs
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

#[test]
fn every_toml_block_in_the_docs_is_a_configuration_its_daemon_accepts() {
    let root = workspace();
    let files = documentation();
    let mut checked = Checked::default();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        check_markdown(file, &text, &mut checked);
    }
    assert!(
        checked.failures.is_empty(),
        "{} TOML blocks of the documentation are not valid configurations:\n{}",
        checked.failures.len(),
        checked.failures.join("\n")
    );
    // Not vacuous: the configuration reference shows both daemons' files.
    assert!(checked.registrar >= 2 && checked.spoa >= 2, "too few TOML blocks found in {files:?}: {checked:?}");
    eprintln!(
        "{} registrar and {} spoa configurations in {} files are valid",
        checked.registrar,
        checked.spoa,
        files.len()
    );
}

/// CI and users rely on the README's first lines: the two commands that work on a fresh machine.
#[test]
fn the_readme_opens_with_the_sandbox_and_the_tests() {
    let root = workspace();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let commands: Vec<&str> = readme.lines().take(4).filter(|l| l.starts_with("    make ")).collect();
    assert_eq!(commands.len(), 2, "the README's first lines should be the two commands:\n{readme:.300}");
    assert!(commands[0].starts_with("    make sandbox ") && commands[1].starts_with("    make test "), "{commands:?}");
    let makefile = std::fs::read_to_string(root.join("Makefile")).expect("Makefile");
    for target in ["sandbox:", "test:"] {
        assert!(makefile.lines().any(|l| l.starts_with(target)), "the Makefile has no `{target}` target");
    }
}

#[test]
fn fences_are_found_with_their_lines_info_and_indentation() {
    let markdown = "# Title\n\n```toml registrar\na = 1\n```\n\n- item\n\n  ~~~~toml spoa\n  b = 2\n    c = 3\n  ~~~~\n\n````text\n```\nnot a fence end\n````\n";
    let blocks = fenced_blocks(markdown).unwrap();
    let expected = [
        Block { line: 3, info: "toml registrar".into(), text: "a = 1\n".into() },
        Block { line: 9, info: "toml spoa".into(), text: "b = 2\n  c = 3\n".into() },
        Block { line: 14, info: "text".into(), text: "```\nnot a fence end\n".into() },
    ];
    assert_eq!(blocks, expected);
    assert_eq!(fenced_blocks("text\n\n```toml\nx = 1\n"), Err(3));
    assert_eq!(fenced_blocks("```` ```toml ```` blocks are checked\n"), Ok(Vec::new()));
}

#[test]
fn tags_name_a_daemon() {
    assert_eq!(toml_daemon("toml registrar"), Some(Ok("registrar")));
    assert_eq!(toml_daemon("toml  spoa"), Some(Ok("spoa")));
    assert_eq!(toml_daemon("TOML spoa"), Some(Ok("spoa")));
    for untagged in ["toml", "toml nerve", "toml spoa registrar"] {
        assert_eq!(toml_daemon(untagged), Some(Err(())), "{untagged}");
    }
    for other in ["", "text", "ini", "tomlish spoa", "json"] {
        assert_eq!(toml_daemon(other), None, "{other}");
    }
}

/// A broken block fails, naming its file and line: an untagged one, a field out of range, an
/// unknown field (at its own line), a fragment; good blocks of both daemons pass.
#[test]
fn broken_blocks_are_reported_with_file_and_line() {
    let markdown = r#"# Page

```toml
[zookeeper]
connect = "zk1:2181"
```

```toml registrar
[zookeeper]
connect = "zk1:2181"
session_timeout = "1h"
```

```toml spoa
[zookeeper]
connect = "zk1:2181"

[haproxy]
socket = "/run/haproxy/axon.sock"
resync = "10s"
```

```toml registrar
[[service]]
name = "web"
host = "10.0.0.5"
port = 8080
zk_path = "/nerve/services/web/services"

[[service.checks]]
type = "tcp"
```

```toml registrar
[zookeeper]
connect = "zk1:2181"
```

```toml spoa
[zookeeper]
connect = "zk1:2181"

[haproxy]
socket = "/run/haproxy/axon.sock"
```
"#;
    let mut checked = Checked::default();
    check_markdown("docs/page.md", markdown, &mut checked);
    assert_eq!((checked.registrar, checked.spoa), (3, 2), "{checked:?}");
    let failures = checked.failures;
    assert_eq!(failures.len(), 4, "{failures:#?}");
    let expected = [
        "docs/page.md:3: a TOML block must say which daemon it configures",
        "docs/page.md:8: ```toml registrar block: `zookeeper.session_timeout` = \"1h\": expected a duration",
        "docs/page.md:20: ```toml spoa block of line 14: `haproxy.resync`: unknown field `resync`",
        "docs/page.md:2",
    ];
    for (failure, start) in failures.iter().zip(expected) {
        assert!(failure.starts_with(start), "expected {start:?} at the start of:\n{failure}");
    }
    assert!(failures[3].contains("block of line 23: `(document)`: missing field `zookeeper`"), "{}", failures[3]);
}
