//! Table output exactly as fleetctl printed it: Go's `text/tabwriter` with tab padding
//! (minwidth 0, tabwidth 8, padding 1, padchar TAB), `-` for empty cells.

use std::fmt;

/// Prints `--output json`: one JSON object per row, one per line (the schema is in
/// README.md and only grows).
pub fn print_json_rows(rows: impl IntoIterator<Item = serde_json::Value>) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for row in rows {
        writeln!(stdout, "{row}")?;
    }
    stdout.flush()
}

/// Output fields could not be selected from `--fields`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("Must define output format")]
    Empty,
    #[error("Invalid key in output format: {0:?}")]
    Unknown(String),
}

/// Parses `--fields` against the fields a command knows; `None` gives the defaults.
pub fn select_fields<'a>(
    requested: Option<&str>,
    defaults: &[&'a str],
    valid: &[&'a str],
) -> Result<Vec<&'a str>, FieldsError> {
    let Some(requested) = requested else {
        return Ok(defaults.to_vec());
    };
    if requested.trim().is_empty() {
        return Err(FieldsError::Empty);
    }
    requested
        .split(',')
        .map(|f| {
            valid
                .iter()
                .copied()
                .find(|v| *v == f)
                .ok_or_else(|| FieldsError::Unknown(f.to_string()))
        })
        .collect()
}

/// A table of string cells rendered with tabwriter's rules.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with an optional legend (upper-cased field names).
    pub fn new(fields: &[&str], legend: bool) -> Table {
        let mut rows = Vec::new();
        if legend {
            rows.push(fields.iter().map(|f| f.to_uppercase()).collect());
        }
        Table { rows }
    }

    /// Appends a row; empty cells print as `-`.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(
            row.into_iter()
                .map(|c| if c.is_empty() { "-".to_string() } else { c })
                .collect(),
        );
    }

    /// Sorts the data rows (not the legend) by the cell of one column, stably.
    pub fn sort_by_column(&mut self, column: usize, has_legend: bool) {
        let start = usize::from(has_legend).min(self.rows.len());
        self.rows[start..].sort_by(|a, b| a.get(column).cmp(&b.get(column)));
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        // Width of every column except the last: round up (max cell + padding 1) to a tab stop.
        let widths: Vec<usize> = (0..columns.saturating_sub(1))
            .map(|c| {
                let max = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0);
                (max + 1).div_ceil(8) * 8
            })
            .collect();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                f.write_str(cell)?;
                if let Some(w) = widths.get(c).filter(|_| c + 1 < row.len()) {
                    let tabs = (w - cell.chars().count()).div_ceil(8);
                    for _ in 0..tabs {
                        f.write_str("\t")?;
                    }
                }
            }
            f.write_str("\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_fleet_tabwriter_output() {
        let mut t = Table::new(&["unit", "hash", "dstate", "state", "target"], true);
        t.push(vec![
            "hello.service".into(),
            "e55c0ae".into(),
            "launched".into(),
            "launched".into(),
            "113f16a7.../172.17.8.103".into(),
        ]);
        assert_eq!(
            t.to_string(),
            "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\nhello.service\te55c0ae\tlaunched\tlaunched\t113f16a7.../172.17.8.103\n"
        );
    }

    #[test]
    fn empty_cells_and_no_legend() {
        let mut t = Table::new(&["machine", "ip"], false);
        t.push(vec!["abc...".into(), String::new()]);
        assert_eq!(t.to_string(), "abc...\t-\n");
        assert_eq!(Table::new(&["unit"], true).to_string(), "UNIT\n");
    }

    #[test]
    fn field_selection() {
        let valid = ["unit", "hash"];
        assert_eq!(select_fields(None, &["unit"], &valid), Ok(vec!["unit"]));
        assert_eq!(
            select_fields(Some("hash,unit"), &["unit"], &valid),
            Ok(vec!["hash", "unit"])
        );
        assert_eq!(
            select_fields(Some(""), &["unit"], &valid),
            Err(FieldsError::Empty)
        );
        assert_eq!(
            select_fields(Some("unit,bogus"), &["unit"], &valid)
                .unwrap_err()
                .to_string(),
            "Invalid key in output format: \"bogus\""
        );
    }
}
