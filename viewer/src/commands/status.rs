//! `tally-view status PACKAGE KEYFILE [--json]`: the checks of an opening, headless —
//! the keyfile against the trusted publishers, the card, ValidateTrail, the policy,
//! the online validation the keyfile requires — then what is left. Exit 0 when reading is
//! allowed, 1 when not (with the reason). Like ValidateTrail itself ([0060]), it appends
//! one nonce record to the trail; like opening, it validates online when that is due
//! (never validated, or the last ticket too old or expired), so it may change the
//! copy's validation state.

use super::{Failure, Outcome};
use crate::cli::StatusArgs;
use crate::meter::{OpenInputs, check_rental};
use std::sync::Arc;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::{Decision, SystemClock};

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
    };
    let (problem, decision, tally, online) = match check_rental(&inputs) {
        Ok(c) => (
            None,
            Some(c.decision),
            Some(c.meter.tally().clone()),
            c.online,
        ),
        Err(p) => (Some(p), None, None, None),
    };
    let (allowed, headline, reason) = match (&problem, &decision) {
        (Some(p), _) => {
            let (title, _, action) = crate::ui::problem_text(p);
            (false, title.to_string(), format!("{p}. {action}"))
        }
        (None, Some(Decision::Allowed { remaining })) => (
            true,
            "reading is allowed".to_string(),
            format!("left: {remaining}"),
        ),
        (None, Some(Decision::Limited { reason })) => (
            false,
            "rental used up: cover page only".to_string(),
            reason.to_string(),
        ),
        (None, Some(Decision::Denied { reason })) => {
            (false, "refused".to_string(), reason.to_string())
        }
        (None, _) => (false, "refused".to_string(), "no decision".to_string()),
    };
    if args.json {
        let remaining = match &decision {
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
        let used = tally.map(|t| {
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
