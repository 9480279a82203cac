//! The published version's description: which image (by digest), from which
//! commit, built by which pipeline run — so `aws lambda list-versions-by-function`
//! answers "what is version 12?" without hoist. Lambda allows 256 characters;
//! the digest always fits, the rest is dropped (not cut mid-way) when it does
//! not. hoist also reads the digest back from it (is the alias already
//! serving this image?).

use crate::env::Env;
use crate::image::Digest;

pub const MAX: usize = 256;
const PREFIX: &str = "hoist";

/// The commit and pipeline URL of the CI run, from the CI system's own
/// variables, in a fixed order of systems.
pub fn from_env(env: &Env) -> (Option<String>, Option<String>) {
    let commit = env
        .first(&[
            "GITHUB_SHA",
            "CI_COMMIT_SHA",
            "BUILDKITE_COMMIT",
            "CIRCLE_SHA1",
            "BITBUCKET_COMMIT",
            "GIT_COMMIT",
        ])
        .map(str::to_string);
    let url =
        if let (Some(repo), Some(run)) = (env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")) {
            Some(format!(
                "{}/{repo}/actions/runs/{run}",
                env.get("GITHUB_SERVER_URL").unwrap_or("https://github.com")
            ))
        } else if let (Some(origin), Some(n)) = (
            env.get("BITBUCKET_GIT_HTTP_ORIGIN"),
            env.get("BITBUCKET_BUILD_NUMBER"),
        ) {
            Some(format!("{origin}/pipelines/results/{n}"))
        } else {
            env.first(&[
                "CI_PIPELINE_URL",
                "BUILDKITE_BUILD_URL",
                "CIRCLE_BUILD_URL",
                "BUILD_URL",
            ])
            .map(str::to_string)
        };
    (commit, url)
}

pub fn description(digest: &Digest, commit: Option<&str>, url: Option<&str>) -> String {
    let mut s = format!("{PREFIX} {digest}");
    for part in [
        commit.map(|c| format!("commit {c}")),
        url.map(str::to_string),
    ]
    .into_iter()
    .flatten()
    {
        if s.len() + 1 + part.len() <= MAX {
            s.push(' ');
            s.push_str(&part);
        }
    }
    s
}

/// The description of the version hoist publishes from an alias's $LATEST
/// before a deploy (so that the alias can shift from a published version):
/// the digest $LATEST served, when known, and what replaced it.
pub fn pinned(serving: Option<&Digest>, deploying: &Digest) -> String {
    match serving {
        Some(d) => format!(
            "{PREFIX} {d} ($LATEST as served before deploying {})",
            deploying.short()
        ),
        None => format!(
            "{PREFIX}: $LATEST as served before deploying {}",
            deploying.short()
        ),
    }
}

/// The digest a version was deployed from, if hoist published it.
pub fn digest_in(description: &str) -> Option<Digest> {
    let rest = description.strip_prefix(PREFIX)?.trim_start();
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_latest() {
        let old: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let new: Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        let d = pinned(Some(&old), &new);
        assert!(d.len() <= MAX);
        assert_eq!(digest_in(&d), Some(old));
        let d = pinned(None, &new);
        assert_eq!(digest_in(&d), None);
        assert!(d.contains("$LATEST"));
    }

    #[test]
    fn descriptions() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let long_url = format!("https://ci.example.com/{}", "x".repeat(200));
        let cases: Vec<(Option<&str>, Option<&str>, String)> = vec![
            (None, None, format!("hoist {d}")),
            (
                Some(sha),
                Some("https://github.com/o/r/actions/runs/1"),
                format!("hoist {d} commit {sha} https://github.com/o/r/actions/runs/1"),
            ),
            // Too long for Lambda's 256: the URL goes, the commit stays.
            (
                Some(sha),
                Some(&long_url),
                format!("hoist {d} commit {sha}"),
            ),
        ];
        for (c, u, want) in cases {
            let got = description(&d, c, u);
            assert_eq!(got, want);
            assert!(got.len() <= MAX);
            assert_eq!(digest_in(&got), Some(d.clone()));
        }
        assert_eq!(digest_in("built by hand"), None);
        assert_eq!(digest_in("hoist nonsense"), None);
    }

    #[test]
    fn ci_variables() {
        type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                vec![
                    ("GITHUB_SHA", "abc"),
                    ("GITHUB_REPOSITORY", "o/r"),
                    ("GITHUB_RUN_ID", "42"),
                ],
                Some("abc"),
                Some("https://github.com/o/r/actions/runs/42"),
            ),
            (
                vec![
                    ("CI_COMMIT_SHA", "def"),
                    ("CI_PIPELINE_URL", "https://gitlab.com/g/p/-/pipelines/7"),
                ],
                Some("def"),
                Some("https://gitlab.com/g/p/-/pipelines/7"),
            ),
            (
                vec![
                    ("BUILDKITE_COMMIT", "1"),
                    ("BUILDKITE_BUILD_URL", "https://buildkite.com/o/p/builds/3"),
                ],
                Some("1"),
                Some("https://buildkite.com/o/p/builds/3"),
            ),
            (
                vec![
                    ("GIT_COMMIT", "9"),
                    ("BUILD_URL", "https://jenkins/job/x/5/"),
                ],
                Some("9"),
                Some("https://jenkins/job/x/5/"),
            ),
            (vec![], None, None),
        ];
        for (vars, commit, url) in cases {
            let env = Env::from_pairs(vars.clone());
            let (c, u) = from_env(&env);
            assert_eq!((c.as_deref(), u.as_deref()), (commit, url), "{vars:?}");
        }
    }
}
