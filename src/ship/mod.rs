//! `hoist ship`: the stages in one process with one set of credentials —
//! auth (through the run's [`Context`]), push, then the later stages — and
//! one summary. The first stage that fails ends the run with its own error
//! (and so its own exit code).

use serde::Serialize;

use crate::Context;
use crate::cli::ShipArgs;
use crate::error::Error;
use crate::push;

#[derive(Debug, Serialize)]
pub struct Report {
    pub push: push::Report,
}

pub async fn run(ctx: &Context, args: ShipArgs) -> Result<Report, Error> {
    let pushed = push::run(ctx, args.push, args.dry_run).await?;
    Ok(Report { push: pushed })
}

impl Report {
    pub fn summary_line(&self) -> String {
        self.push.summary_line()
    }

    pub fn markdown(&self) -> String {
        self.push.markdown()
    }
}
