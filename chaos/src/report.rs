//! The table of a suite run: printed, and kept in docs/reliability.md between two markers.

use std::path::Path;
use std::time::Duration;

use crate::ledger::Ledger;

pub const BEGIN: &str = "<!-- chaos-table:begin -->";
pub const END: &str = "<!-- chaos-table:end -->";
const HEADER: &str = "| fault | sent | accepted | fulfilled | rejected | lost | duplicated | oversold | 5xx (failures) | unanswered (final / absent) | recover | settle | verdict |";
const RULE: &str = "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|";

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// One row of the table.
pub fn row(fault: &str, l: &Ledger) -> String {
    format!(
        "| {fault} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} ({} / {}) | {} | {} | {} |",
        l.sent,
        l.accepted,
        l.fulfilled,
        l.rejected,
        l.lost,
        l.duplicated,
        l.oversold,
        l.http_5xx,
        l.http_5xx_failures,
        l.unanswered,
        l.unanswered_final,
        l.unanswered_absent,
        secs(l.recover),
        secs(Some(l.settle)),
        if l.passed() { "pass" } else { "FAIL" }
    )
}

/// The table of these rows, with its header.
pub fn table(rows: &[(String, String)]) -> String {
    let mut out = format!("{HEADER}\n{RULE}\n");
    for (_, r) in rows {
        out.push_str(r);
        out.push('\n');
    }
    out
}

/// One fault's outcome as the doc keeps it: its name, its table row, its problems.
pub struct Outcome {
    pub name: String,
    pub row: String,
    pub problems: Vec<String>,
}

/// Replaces the rows and problem lines of these faults in the marked section of `path`
/// (other faults' rows stay), and adds the line that says when and at what size they ran
/// (dropping older such lines that name only faults run again).
pub fn update_doc(path: &Path, outcomes: &[Outcome], note: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        anyhow::bail!("{} has no {BEGIN} ... {END} section", path.display());
    };
    let inside = &text[b + BEGIN.len()..e];
    let rerun = |name: &str| outcomes.iter().any(|o| o.name == name);
    let mut kept: Vec<(String, String)> = inside
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| fault "))
        .filter_map(|l| Some((l.split('|').nth(1)?.trim().to_owned(), l.to_owned())))
        .filter(|(name, _)| !rerun(name))
        .collect();
    kept.extend(outcomes.iter().map(|o| (o.name.clone(), o.row.clone())));
    let order: Vec<String> = crate::faults::ALL.iter().map(|f| f.name()).collect();
    kept.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    // Problem lines: "- `fault`: text".
    let mut problems: Vec<(String, String)> = inside
        .lines()
        .filter(|l| l.starts_with("- `"))
        .filter_map(|l| Some((l[3..].split('`').next()?.to_owned(), l.to_owned())))
        .filter(|(name, _)| !rerun(name))
        .collect();
    for o in outcomes {
        for p in &o.problems {
            let p = p.replace('\n', " ");
            problems.push((o.name.clone(), format!("- `{}`: {p}", o.name)));
        }
    }
    problems.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    let mut notes: Vec<String> = inside
        .lines()
        .filter(|l| l.starts_with("Run "))
        .filter(|l| {
            // Keep a note while it names a fault not run again.
            l.split('`').skip(1).step_by(2).any(|name| !rerun(name))
        })
        .map(str::to_owned)
        .collect();
    notes.push(note.to_owned());
    let mut section = format!("{BEGIN}\n{}\n", table(&kept));
    if !problems.is_empty() {
        section.push_str("Problems found:\n\n");
        for (_, line) in &problems {
            section.push_str(line);
            section.push('\n');
        }
        section.push('\n');
    }
    section.push_str(&notes.join("\n\n"));
    section.push('\n');
    section.push_str(END);
    let updated = format!("{}{}{}", &text[..b], section, &text[e + END.len()..]);
    std::fs::write(path, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, cell: &str, problems: &[&str]) -> Outcome {
        Outcome {
            name: name.to_owned(),
            row: format!("| {name} | {cell} |"),
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn a_rerun_replaces_its_own_rows_and_problems_and_keeps_the_others() {
        let path = std::env::temp_dir().join(format!("chaos-doc-{}.md", std::process::id()));
        std::fs::write(&path, format!("# title\n\n{BEGIN}\n{END}\n\nafter\n")).unwrap();
        let a = [outcome("logic-kill", "1", &["500 at 3 s"])];
        update_doc(&path, &a, "Run 1: `logic-kill`.").unwrap();
        let b = [outcome("worker-kill", "2", &[])];
        update_doc(&path, &b, "Run 2: `worker-kill`.").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("| logic-kill | 1 |") && text.contains("| worker-kill | 2 |"));
        assert!(text.contains("- `logic-kill`: 500 at 3 s"));
        assert!(text.contains("Run 1: `logic-kill`.") && text.contains("Run 2: `worker-kill`."));
        // The table lists the faults in the suite's order, whatever order they ran in.
        assert!(text.find("| worker-kill |") < text.find("| logic-kill |"));

        let again = [outcome("logic-kill", "3", &[])];
        update_doc(&path, &again, "Run 3: `logic-kill`.").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("| logic-kill | 3 |") && !text.contains("| logic-kill | 1 |"));
        assert!(!text.contains("500 at 3 s") && !text.contains("Run 1:"));
        assert!(text.contains("Run 2: `worker-kill`.") && text.ends_with("after\n"));
        std::fs::remove_file(&path).unwrap();
    }
}
