//! `tally-view status PACKAGE KEYFILE [--json]`: where a rental stands, headless — the
//! checks of an opening (the keyfile against the trusted publishers, the package, the
//! card, the trail against the card's counter, the policy, the last ticket), then what is
//! left, in the same words as the window's status bar. Exit 0 when reading is allowed, 1
//! when not (with the reason), and what the automatic backup of the trail last did. It
//! spends no card counter and goes nowhere online (`tally_core::rental::check_standing`):
//! opening the document and `validate` do those.

use super::{Failure, Outcome};
use crate::cli::StatusArgs;
use std::sync::Arc;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::{Decision, SystemClock};
use tally_core::rental::{OpenInputs, backup_lines, check_standing, left_lines};

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Runs `status`.
pub fn run(args: &StatusArgs, home: &Home, card: &CardSpec, demo: bool) -> Outcome {
    let mut trusted = super::trust::trusted(home);
    let mut card = card.clone();
    if demo {
        let d = crate::demo::prepare(home.root())?;
        trusted.push(d.vendor);
        card = CardSpec::Emulated(Some(d.card));
    }
    let inputs = OpenInputs {
        package: args.package.clone(),
        keyfile: args.keyfile.clone(),
        home: home.clone(),
        card,
        trusted,
        clock: Arc::new(SystemClock),
        transport: Arc::new(tally_core::rental::NoNetwork),
    };
    let standing = check_standing(&inputs);
    let (allowed, headline, reason) = match &standing {
        Err(p) => {
            let (title, _, action) = crate::ui::problem_text(p);
            (false, title.to_string(), format!("{p}. {action}"))
        }
        Ok(s) => match &s.decision {
            Decision::Allowed { remaining } => (
                true,
                "reading is allowed".to_string(),
                left_lines(
                    remaining,
                    s.keyfile.rights().print,
                    time::OffsetDateTime::now_utc(),
                )
                .join(" · "),
            ),
            Decision::Limited {
                reason: reason @ tally_core::policy::Reason::Returned { .. },
            } => (
                false,
                "this licence was returned: only the cover page can be shown".to_string(),
                reason.to_string(),
            ),
            Decision::Limited { reason } => (
                false,
                "this rental is used up: only the cover page can be shown".to_string(),
                reason.to_string(),
            ),
            Decision::Denied { reason } => (false, "refused".to_string(), reason.to_string()),
        },
    };
    let ok = standing.as_ref().ok();
    let online = ok.and_then(|s| s.online);
    let due = ok.and_then(|s| s.online_due.clone());
    let backup = ok
        .map(|s| backup_lines(home, &s.keyfile))
        .unwrap_or_default();
    if args.json {
        let remaining = match ok.map(|s| &s.decision) {
            Some(Decision::Allowed { remaining }) => serde_json::json!({
                "pages": remaining.pages,
                "seconds": remaining.seconds,
                "opens": remaining.opens,
                "units": remaining.units,
                "prints": remaining.prints,
                "until": remaining.until.map(|t| t.unix_timestamp()),
            }),
            _ => serde_json::Value::Null,
        };
        let used = ok.map(|s| {
            let t = &s.tally;
            serde_json::json!({
                "opens": t.opens, "page_views": t.page_views, "seconds": t.seconds, "printed": t.printed,
            })
        });
        println!(
            "{:#}",
            serde_json::json!({
                "allowed": allowed,
                "status": headline,
                "reason": reason,
                "remaining": remaining,
                "used": used,
                "last_validated": online.map(|s| rfc3339(s.last_validated)),
                "valid_until": online.map(|s| rfc3339(s.valid_until)),
                "online_check_due": due,
                "backup": backup,
            })
        );
    } else if allowed {
        println!("{headline}; {reason}");
        if let Some(s) = online {
            println!(
                "last validated online {}; usable offline until {}",
                rfc3339(s.last_validated),
                rfc3339(s.valid_until)
            );
        }
        if let Some(d) = &due {
            println!("an online check is due ({d}): opening the document makes it");
        }
        for line in &backup {
            println!("backup: {line}");
        }
    } else {
        println!("not allowed: {headline}");
        println!("{reason}");
    }
    if allowed {
        Ok(())
    } else {
        Err(Failure::Check(anyhow::anyhow!("{headline}")))
    }
}
