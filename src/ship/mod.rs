//! `hoist ship`: the stages in one process with one set of credentials —
//! auth (through the run's [`Context`], once), push, gate, deploy — and one
//! summary. The first stage that fails ends the run with its own error (and
//! so its own exit code); a blocked gate ends it with exit code 1 and
//! nothing deployed.

use serde::Serialize;

use crate::Context;
use crate::cli::ShipArgs;
use crate::deploy;
use crate::error::Error;
use crate::push;
use crate::registry::reference::ImageRef;
use crate::scan;

#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub push: push::Report,
    /// The gate's report; None when there was nothing to gate yet (a dry
    /// run of an image not in ECR).
    pub gate: Option<scan::Report>,
    /// The deploy's report (a plan, in a dry run); None when it did not run.
    pub deploy: Option<deploy::Report>,
    /// Why a stage did not run.
    pub skipped: Vec<String>,
}

pub async fn run(ctx: &Context, args: ShipArgs) -> Result<Report, Error> {
    let dry_run = args.dry_run;
    // Without --function (and --alias) ship stops after the gate; with only
    // one of them it is a mistake, found before anything is pushed.
    // Every flag of every stage is checked before anything is pushed.
    let gate_settings = scan::Settings::try_from(args.gate.flags(args.scan_timeout))?;
    let deploy_flags = args.deploy.flags(args.deploy_timeout);
    let deploying = deploy_flags.wanted();
    let deploy_settings = if deploying {
        Some(deploy::Settings::try_from(deploy_flags)?)
    } else {
        None
    };
    let (pushed, contents) = if dry_run {
        let (report, contents) = push::plan(ctx, args.push).await?;
        (report, Some(contents))
    } else {
        (push::run(ctx, args.push).await?, None)
    };
    let mut report = Report {
        dry_run,
        push: pushed,
        gate: None,
        deploy: None,
        skipped: vec![],
    };
    // The digest, never a tag, travels between the stages.
    let image = ImageRef {
        registry: Some(report.push.registry.clone()),
        repository: report.push.repository.clone(),
        digest: report.push.digest.clone(),
    };
    let gate = match (dry_run, report.push.already_present) {
        (false, _) => Some(scan::run(ctx, &image, &gate_settings).await?),
        (true, true) => Some(scan::look(ctx, &image, &gate_settings).await?),
        (true, false) => {
            report.skipped.push(
                "gate: the image is not in ECR yet, so it has no scan; the real run waits for it"
                    .into(),
            );
            None
        }
    };
    let stop = gate.as_ref().is_some_and(|g| g.exit_code() != 0);
    report.gate = gate;
    if stop {
        report
            .skipped
            .push("deploy: the gate did not pass; nothing was deployed".into());
        return Ok(report);
    }
    let Some(deploy_settings) = deploy_settings else {
        report
            .skipped
            .push("deploy: no --function and --alias given".into());
        return Ok(report);
    };
    // A dry run plans the deploy from the image on disk: it need not be in
    // ECR yet. A deploy that fails after a clean gate fails the run with its
    // own error; what was pushed stays pushed (and is reported in the log).
    let deployed = match &contents {
        Some(c) => deploy::plan(ctx, &image, &deploy_settings, c).await,
        None => deploy::run(ctx, &image, &deploy_settings, false).await,
    };
    match deployed {
        Ok(d) => report.deploy = Some(d),
        Err(e) => {
            eprintln!("{}", report.summary_line());
            return Err(e);
        }
    }
    Ok(report)
}

impl Report {
    /// 0, or the exit code of the stage that stopped the run.
    pub fn exit_code(&self) -> u8 {
        match (&self.gate, &self.deploy) {
            (Some(g), _) if g.exit_code() != 0 => g.exit_code(),
            (_, Some(d)) => d.exit_code(),
            _ => 0,
        }
    }

    pub fn summary_line(&self) -> String {
        let mut lines = vec![self.push.summary_line()];
        if let Some(g) = &self.gate {
            lines.push(g.log());
        }
        if let Some(d) = &self.deploy {
            lines.push(d.summary_line());
        }
        lines.extend(self.skipped.iter().map(|s| format!("skipped {s}")));
        lines.join("\n")
    }

    pub fn markdown(&self) -> String {
        let mut md = self.push.markdown();
        if let Some(g) = &self.gate {
            md.push('\n');
            md.push_str(&g.markdown());
        }
        if let Some(d) = &self.deploy {
            md.push('\n');
            md.push_str(&d.markdown());
        }
        for s in &self.skipped {
            md.push_str(&format!("\n_skipped {s}_\n"));
        }
        md
    }
}
