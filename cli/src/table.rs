//! Answers as aligned text columns, for people; `--json` prints the API's JSON instead.

use serde_json::Value;

/// Rows under a header, each column as wide as its widest cell (cells are cut at `MAX`).
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    const MAX: usize = 60;
    let cut = |cell: &str| -> String {
        let one_line = cell.replace(['\n', '\r', '\t'], " ");
        if one_line.chars().count() > MAX {
            let mut short: String = one_line.chars().take(MAX - 1).collect();
            short.push('…');
            short
        } else {
            one_line
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A field as a cell: strings as they are, lists joined by commas, absent as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `key: value` lines for one object, keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_long_cells_are_cut() {
        let text = render(
            &["ID", "URL"],
            &[
                vec!["sub_1".into(), "https://a.example/".into()],
                vec!["sub_22".into(), "x".repeat(100)],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID      URL");
        assert_eq!(lines[1], "sub_1   https://a.example/");
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[2].chars().count(), 8 + 60);
    }

    #[test]
    fn cells_show_lists_and_absence() {
        assert_eq!(cell(&json!(["a.*", "b"])), "a.*,b");
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!(204)), "204");
        assert_eq!(
            render(&["A"], &[vec!["line\nbreak".into()]]),
            "A\nline break\n"
        );
    }
}
