//! `mab check`, `mab info`, `mab list`: what the manifest says and what this machine lacks.

use std::io::Write;

use super::{Project, emit};
use crate::cli::DataFormat;
use crate::diag::Diagnostics;
use crate::{check, exit_code, info, plan};

pub fn check(
    project: &Project,
    manifest_only: bool,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let model = &project.model;
    let mut diags = plan::graph::check_cycles(model).in_source(&project.source);
    diags.extend(check::files(model, &project.source, &project.base));
    // A checked-in pipeline written from this manifest must still be what mab writes.
    diags.extend(crate::ci::stale(project));
    if !manifest_only {
        diags.extend(check::machine(model));
        diags.extend(check::secrets(model, &project.base));
    }
    let diags = diags.sorted();
    if diags.has_errors() {
        return Err(diags);
    }
    diags.eprint();
    let warnings = diags.len();
    emit(
        out,
        &format!(
            "{}: {} images, {} image versions, {} mirrors; {}\n",
            project.file.display(),
            model.images.len(),
            model.versions.len(),
            model.mirrors.len(),
            match warnings {
                0 => "no problems found".to_owned(),
                1 => "1 warning".to_owned(),
                n => format!("{n} warnings"),
            }
        ),
    );
    Ok(exit_code::SUCCESS)
}

pub fn info(
    project: &Project,
    format: DataFormat,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let model = &project.model;
    emit(
        out,
        &match format {
            DataFormat::Text => info::info_text(model),
            DataFormat::Json => info::info_json(model),
        },
    );
    Ok(exit_code::SUCCESS)
}

pub fn list(
    project: &Project,
    selectors: &[String],
    format: DataFormat,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let model = &project.model;
    let picked = plan::select::pick(model, selectors).map_err(|d| project.located(d))?;
    emit(
        out,
        &match format {
            DataFormat::Text => info::list_text(model, &picked.versions),
            DataFormat::Json => info::list_json(model, &picked.versions),
        },
    );
    Ok(exit_code::SUCCESS)
}
