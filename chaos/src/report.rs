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

/// Replaces the rows of these faults in the marked section of `path` (other faults' rows
/// stay), and the line that says when and at what size they ran.
pub fn update_doc(path: &Path, rows: &[(String, String)], note: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        anyhow::bail!("{} has no {BEGIN} ... {END} section", path.display());
    };
    let inside = &text[b + BEGIN.len()..e];
    let mut kept: Vec<(String, String)> = inside
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| fault "))
        .filter_map(|l| {
            let name = l.split('|').nth(1)?.trim().to_owned();
            Some((name, l.to_owned()))
        })
        .collect();
    let mut notes: Vec<String> = inside
        .lines()
        .filter(|l| l.starts_with("Run "))
        .map(str::to_owned)
        .collect();
    for (name, r) in rows {
        match kept.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = r.clone(),
            None => kept.push((name.clone(), r.clone())),
        }
    }
    let order: Vec<String> = crate::faults::ALL.iter().map(|f| f.name()).collect();
    kept.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    notes.retain(|n| {
        !rows
            .iter()
            .any(|(name, _)| n.contains(&format!("`{name}`")))
    });
    notes.push(note.to_owned());
    let section = format!(
        "{BEGIN}\n{}\n{}{END}",
        table(&kept),
        notes.join("\n\n") + "\n"
    );
    let updated = format!("{}{}{}", &text[..b], section, &text[e + END.len()..]);
    std::fs::write(path, updated)?;
    Ok(())
}
