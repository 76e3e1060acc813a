//! Class names: from the ONNX `names` metadata (Ultralytics writes a Python dict literal,
//! `{0: 'person', 1: 'bicycle', …}`), from a labels file (one name per line), or `class<i>`.
//! Load-time only; allocation does not matter here.

use std::path::Path;

/// Parses an Ultralytics `names` value: a Python dict literal of `int: 'str'` (or `"str"`)
/// entries. Returns names indexed by class, with `class<i>` for indices the dict skips, or
/// an error naming what is wrong.
pub fn parse_names_dict(text: &str) -> Result<Vec<String>, String> {
    let s = text.trim();
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| format!("`names` is not a {{index: 'name'}} dict: {}", clip(s)))?;
    let mut entries: Vec<(usize, String)> = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("missing `:` in `names` near {}", clip(rest)))?;
        let index: usize = rest[..colon].trim().parse().map_err(|_| {
            format!(
                "`names` key {:?} is not a class index",
                rest[..colon].trim()
            )
        })?;
        rest = rest[colon + 1..].trim_start();
        let quote = rest
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or_else(|| format!("`names` value for {index} is not a quoted string"))?;
        let mut name = String::new();
        let mut chars = rest[1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        name.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                }
                c if c == quote => {
                    end = Some(1 + i + c.len_utf8());
                    break;
                }
                c => name.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated name for class {index} in `names`"))?;
        if index > 65535 {
            return Err(format!("`names` has class index {index}, above 65535"));
        }
        entries.push((index, name));
        rest = rest[end..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected `,` in `names` near {}", clip(rest)));
        }
    }
    let count = entries.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
    let mut names: Vec<String> = (0..count).map(|i| format!("class{i}")).collect();
    for (i, n) in entries {
        names[i] = n;
    }
    Ok(names)
}

/// Reads a labels file: one name per line (index = line number − 1), surrounding whitespace
/// trimmed, trailing empty lines ignored.
pub fn read_labels_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read labels file {}: {e}", path.display()))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        return Err(format!("labels file {} has no names", path.display()));
    }
    Ok(names)
}

/// `names` extended (or, with `None`, made) to `classes` entries with `class<i>`.
pub fn complete(names: Option<Vec<String>>, classes: usize) -> Vec<String> {
    let mut names = names.unwrap_or_default();
    for i in names.len()..classes {
        names.push(format!("class{i}"));
    }
    names
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ultralytics_names() {
        let n = parse_names_dict("{0: 'person', 1: \"bicycle\", 2: 'it\\'s', 4: 'potted plant'}")
            .unwrap();
        assert_eq!(n, ["person", "bicycle", "it's", "class3", "potted plant"]);
        assert_eq!(parse_names_dict("{}").unwrap(), Vec::<String>::new());
        assert!(parse_names_dict("[person]").is_err());
        assert!(parse_names_dict("{0: person}").is_err());
        assert!(parse_names_dict("{a: 'x'}").is_err());
        assert!(parse_names_dict("{0: 'x' 1: 'y'}").is_err());
        assert!(parse_names_dict("{0: 'x").is_err());
    }

    #[test]
    fn completes_with_class_i() {
        assert_eq!(complete(None, 2), ["class0", "class1"]);
        assert_eq!(complete(Some(vec!["a".into()]), 2), ["a", "class1"]);
    }
}
