//! The documentation holds together: `README.md` stays a front page, every page under `docs/`
//! is reachable from the index, every relative link (and `#anchor`) in `README.md`,
//! `CHANGELOG.md` and `docs/` lands on something that exists inside the repository, and no page
//! cites the project's own issue tracker by number (a number means nothing to a reader of the
//! repository; say what changed, and when). Plain `std`: the pages are read as text.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The front page's budget: what it is, the two commands, switching, features, where to read on.
const README_MAX_LINES: usize = 300;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &Path) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every Markdown page under `docs/`, relative to the repository root, sorted.
fn docs_pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                found.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join("docs"), &mut found);
    found.sort();
    found
}

/// The pages whose links are checked: the front page, the changelog and every docs page.
fn checked_pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    pages.extend(docs_pages());
    pages
}

/// The lines outside fenced code blocks, numbered from 1, with inline code spans blanked out
/// (so that a path or a `#` in code is not read as prose). The code spans' contents are
/// returned beside each line.
fn prose(text: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut lines = Vec::new();
    let mut fence: Option<&str> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => {
                fence = Some(m);
                continue;
            }
            (Some(open), Some(m)) if open == m => {
                fence = None;
                continue;
            }
            (Some(_), _) => continue,
            (None, None) => {}
        }
        let (blanked, spans) = blank_code_spans(line);
        lines.push((index + 1, blanked, spans));
    }
    lines
}

/// A line with the contents of its code spans replaced by spaces, and those contents.
fn blank_code_spans(line: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        // The closing run: the next run of exactly as many backticks.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                spans.push(
                    chars[i + run..end]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string(),
                );
                out.extend(std::iter::repeat_n(' ', end + run - i));
                i = end + run;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    (out, spans)
}

/// The targets of the inline links and images on a prose line: `[text](target)`,
/// `![alt](target "title")`.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // Up to the matching `)`, allowing balanced parentheses inside the target.
        let mut depth = 0usize;
        let mut end = None;
        for (offset, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = Some(offset);
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let inside = after[..end].trim();
        let target = inside.strip_prefix('<').map_or_else(
            || inside.split_whitespace().next().unwrap_or_default(),
            |angled| angled.split('>').next().unwrap_or_default(),
        );
        targets.push(target.to_string());
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors a page's headings make (a repeated heading gets `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let raw: Vec<&str> = text.lines().collect();
    let mut found = BTreeSet::new();
    for (number, _, _) in prose(text) {
        // The line as written: a heading's code spans are part of its anchor.
        let line = raw[number - 1];
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut candidate = base.clone();
        let mut n = 0;
        while found.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        found.insert(candidate);
    }
    found
}

/// `path` made lexical (no `.` or `..`), relative to the repository root; `None` when it
/// climbs out of the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn is_external(target: &str) -> bool {
    ["https://", "http://", "mailto:"]
        .iter()
        .any(|scheme| target.starts_with(scheme))
}

/// Where a relative link from `page` lands, relative to the root, and its anchor; or why it
/// cannot be followed inside the repository.
fn resolve(page: &Path, target: &str) -> Result<(PathBuf, Option<String>), String> {
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor.to_string())),
        None => (target, None),
    };
    if path.is_empty() {
        return Ok((page.to_path_buf(), anchor));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains("://") || path.contains(':')
    {
        return Err(format!(
            "`{target}` is absolute: link inside the repository, relatively"
        ));
    }
    let joined = page.parent().unwrap_or(Path::new("")).join(path);
    let landed = normalise(&joined).ok_or_else(|| format!("`{target}` leaves the repository"))?;
    Ok((landed, anchor))
}

#[test]
fn readme_is_a_front_page() {
    let lines = read(Path::new("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail to a page \
         under docs/ and link it"
    );
}

#[test]
fn every_docs_page_is_in_the_index() {
    let index = Path::new("docs/README.md");
    let mut linked = BTreeSet::new();
    for (_, line, _) in prose(&read(index)) {
        for target in link_targets(&line) {
            if let Ok((path, _)) = resolve(index, &target) {
                linked.insert(path);
            }
        }
    }
    let missing: Vec<_> = docs_pages()
        .into_iter()
        .filter(|page| page != index && !linked.contains(page))
        .collect();
    assert!(
        missing.is_empty(),
        "pages under docs/ that docs/README.md does not link: {missing:?}"
    );
}

#[test]
fn relative_links_resolve_inside_the_repository() {
    let mut problems = Vec::new();
    for page in checked_pages() {
        let text = read(&page);
        for (number, line, spans) in prose(&text) {
            let at = format!("{}:{number}", page.display());
            for target in link_targets(&line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                let (landed, anchor) = match resolve(&page, &target) {
                    Ok(found) => found,
                    Err(why) => {
                        problems.push(format!("{at}: {why}"));
                        continue;
                    }
                };
                let full = root().join(&landed);
                if !full.exists() {
                    problems.push(format!(
                        "{at}: `{target}`: {} does not exist",
                        landed.display()
                    ));
                    continue;
                }
                let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                    continue;
                };
                if full.extension().is_none_or(|ext| ext != "md") {
                    continue;
                }
                if !anchors(&read(&landed)).contains(&anchor) {
                    problems.push(format!(
                        "{at}: `{target}`: {} has no heading for #{anchor}",
                        landed.display()
                    ));
                }
            }
            // A path written as code is still a pointer: it must not leave the repository.
            for span in spans {
                if (span.starts_with("../") || span.starts_with("./"))
                    && resolve(&page, &span).is_err()
                {
                    problems.push(format!("{at}: `{span}` points outside the repository"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// `issue 24`, `issues 17 and 18`, `issue #9`, `#24`: the project's own tracker by number.
fn issue_references(line: &str) -> Vec<String> {
    let lower = line.to_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    let digits_at = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if word_start && bytes[i..].starts_with(b"issue") {
            let mut j = i + "issue".len();
            if bytes.get(j) == Some(&b's') {
                j += 1;
            }
            while bytes.get(j) == Some(&b' ') {
                j += 1;
            }
            if bytes.get(j) == Some(&b'#') {
                j += 1;
            }
            if j > i + "issue".len() && j < bytes.len() && digits_at(j) > 0 {
                found.push(String::from_utf8_lossy(&bytes[i..j + digits_at(j)]).into_owned());
            }
        }
        let hash_start = i == 0 || matches!(bytes[i - 1], b' ' | b'(' | b'[' | b',');
        if hash_start && bytes[i] == b'#' && i + 1 < bytes.len() {
            let n = digits_at(i + 1);
            let after = bytes.get(i + 1 + n);
            if n > 0 && after.is_none_or(|b| !b.is_ascii_alphanumeric()) {
                found.push(String::from_utf8_lossy(&bytes[i..i + 1 + n]).into_owned());
            }
        }
        i += 1;
    }
    found
}

#[test]
fn no_page_cites_the_issue_tracker_by_number() {
    let mut problems = Vec::new();
    for page in checked_pages() {
        for (number, line, _) in prose(&read(&page)) {
            for reference in issue_references(&line) {
                problems.push(format!("{}:{number}: {reference}", page.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "issue numbers mean nothing to a reader of the repository; say what changed and when \
         (another project's issue: link its URL):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_should() {
    assert_eq!(
        slug("Migrating off the shim: `explo-shim translate`"),
        "migrating-off-the-shim-explo-shim-translate"
    );
    assert_eq!(slug("The access log's cost"), "the-access-logs-cost");
    assert_eq!(
        link_targets("see [a](b.md#c) and ![x](img.png \"t\") or [d](<e f.md>)"),
        ["b.md#c", "img.png", "e f.md"]
    );
    assert_eq!(
        issue_references("until issue 16, and issues 17 and 18 (#24)"),
        ["issue 16", "issues 17", "#24"]
    );
    assert!(
        issue_references("the issue's marks; an RFC 9110 §7.6.1 header; #anchor; a#1").is_empty()
    );
    assert!(resolve(Path::new("docs/a/b.md"), "../../../shared/x.md").is_err());
    assert!(resolve(Path::new("docs/a/b.md"), "/etc/passwd").is_err());
    assert_eq!(
        resolve(Path::new("docs/a/b.md"), "../../config/x.toml#k").unwrap(),
        (PathBuf::from("config/x.toml"), Some("k".to_string()))
    );
    let (blanked, spans) = blank_code_spans("a `b` c ``d`e`` f");
    assert_eq!(spans, ["b", "d`e"]);
    assert!(!blanked.contains('b') && blanked.starts_with("a ") && blanked.ends_with(" f"));
    let page = "# T\n\n## The `usage` command\n\n```\n## not a heading\n```\n## Twice\n## Twice\n";
    let found = anchors(page);
    for anchor in ["t", "the-usage-command", "twice", "twice-1"] {
        assert!(found.contains(anchor), "{anchor} in {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
}
