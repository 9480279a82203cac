//! What Lambda's states and reason codes mean for a deploy, as tables.
//!
//! The values are the `State`, `LastUpdateStatusReasonCode` and
//! `StateReasonCode` enums of Lambda's API model (botocore
//! `lambda/2015-03-31/service-2.json`). Most reason codes say that something
//! only the user can change is wrong — the image, the execution role, a KMS
//! key, the VPC configuration — so re-running the same deploy would fail the
//! same way: those are usage errors (exit 2) that name the fix, never
//! "re-running is safe".

use crate::error::Class;

/// Whose move it is after a reason code, and what to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    pub class: Class,
    pub fix: &'static str,
}

const fn user(fix: &'static str) -> Reason {
    Reason {
        class: Class::Usage,
        fix,
    }
}

/// A reason code (LastUpdateStatusReasonCode or StateReasonCode).
pub fn reason(code: &str) -> Reason {
    match code {
        "ImageDeleted" => user(
            "the image was deleted from ECR (a lifecycle rule expiring untagged images?); Lambda re-fetches images and fails once one is gone — even the one the function ran before this deploy. Push that image again (same digest) or deploy one that exists, and keep deployed digests out of lifecycle expiry (tag them)",
        ),
        "ImageAccessDenied" => user(
            "Lambda may not pull the image: the repository policy must let lambda.amazonaws.com ecr:BatchGetImage and ecr:GetDownloadUrlForLayer (same account: or the identity running hoist needs ecr:GetRepositoryPolicy and ecr:SetRepositoryPolicy so Lambda can add that statement itself; across accounts: also a statement for the function's account), and a KMS-encrypted repository's key must let Lambda decrypt (see the README's IAM permissions for deploy)",
        ),
        "InvalidImage" => user(
            "Lambda could not use the image: check its platform (one linux/amd64 or linux/arm64 image, not an index), its layers (gzip) and its entrypoint",
        ),
        "FunctionError.InvalidEntryPoint" => user(
            "the ENTRYPOINT/CMD (or the function's ImageConfig) does not name something Lambda can run: use an absolute path to an executable in the image, not a symlink",
        ),
        "FunctionError.InvalidWorkingDirectory" => user(
            "the image's WORKDIR (or the function's ImageConfig WorkingDirectory) does not exist in the image: fix it",
        ),
        "FunctionError.PermissionDenied" => user(
            "Lambda's user cannot read or execute the entrypoint: make the files world-readable (and the entrypoint executable) in the image",
        ),
        "FunctionError.RuntimeInitError" => user(
            "the function failed while starting (the runtime interface client or your init code): run the image locally with the Lambda runtime interface emulator, and read the function's CloudWatch logs",
        ),
        "FunctionError.ExtensionInitError" | "FunctionError.TooManyExtensions" => user(
            "an extension in the image failed to start (or there are too many): fix or remove it",
        ),
        "FunctionError.InitTimeout" | "FunctionError.InitResourceExhausted" => user(
            "the function's init ran out of time or memory: make init lighter, or raise the function's timeout or memory",
        ),
        "FunctionError" => user(
            "the function failed to start: read Lambda's reason and the function's CloudWatch logs",
        ),
        "InsufficientRolePermissions" => user(
            "the function's execution role lacks permissions Lambda needs for its configuration (e.g. ec2:CreateNetworkInterface for a VPC, kms:Decrypt, logs): add them to the role",
        ),
        "KMSKeyNotFound" => user(
            "the function's KMS key no longer exists: set another key on the function (or none), then deploy again",
        ),
        "DisabledKMSKey" | "InvalidStateKMSKey" => user(
            "the function's KMS key is disabled or pending deletion: enable it (or set another key on the function), then deploy again",
        ),
        "KMSKeyAccessDenied" => user(
            "Lambda may not use the function's KMS key: let the execution role (and Lambda) use it in the key policy",
        ),
        "InvalidConfiguration" => user(
            "the function's configuration is invalid (see Lambda's reason): fix it with aws lambda update-function-configuration, then deploy again",
        ),
        "InvalidSubnet"
        | "InvalidSecurityGroup"
        | "SubnetOutOfIPAddresses"
        | "EniLimitExceeded" => user(
            "the function's VPC configuration cannot be used (subnets, security groups, free IP addresses, network-interface quota): fix it, then deploy again",
        ),
        "EFSMountFailure" | "EFSMountConnectivityError" | "EFSMountTimeout" => user(
            "the function cannot mount its EFS file system: check the access point, mount targets and security groups",
        ),
        "InvalidRuntime" | "InvalidZipFileException" => {
            user("Lambda cannot run this function's package: check the function's configuration")
        }
        "ServiceQuotaExceededException"
        | "VcpuLimitExceeded"
        | "CapacityProviderScalingLimitExceeded" => user(
            "an account quota was reached: raise it (Service Quotas) or free capacity, then deploy again",
        ),
        "DisallowedByVpcEncryptionControl" => user(
            "the VPC's encryption controls refuse the function's configuration: fix the VPC or the function's VPC settings",
        ),
        // InternalError, InsufficientCapacity, DependencyError, EFSIOError
        // and codes newer than hoist: Lambda's side, a later try may work.
        _ => Reason {
            class: Class::Infrastructure,
            fix: "Lambda's own failure: re-running is safe (the alias was not moved); if it persists, see Lambda's reason",
        },
    }
}

/// What a function's or version's State means for the deploy.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    Ready,
    /// Wait and look again.
    Wait,
    /// Lambda failed it: its reason code (see [`reason`]) says why.
    Failed,
    /// It cannot take part in a deploy (a usage error): the fix.
    Refuse(String),
}

/// The function ($LATEST) before hoist's update, or after it (`ours`): its
/// State and LastUpdateStatus (the reason codes are the caller's).
pub fn function(state: Option<&str>, update: Option<&str>, ours: bool) -> Readiness {
    if state == Some("Pending") || update == Some("InProgress") {
        return Readiness::Wait;
    }
    match state {
        Some("Deleting") => Readiness::Refuse(
            "the function is being deleted: deploy to a function that stays".into(),
        ),
        Some("Deactivating") | Some("Deactivated") => Readiness::Refuse(
            "Lambda has deactivated the function (see its StateReason): resolve what Lambda names, wait until it is Active again, then deploy".into(),
        ),
        // After hoist's own update, a Failed state (the image could not be
        // fetched or optimized) fails the deploy with Lambda's reason code.
        Some("Failed") if ours => Readiness::Failed,
        // Active, Inactive (Lambda re-creates what it reclaimed), a Failed
        // function before the update (the update may well fix it), and
        // ActiveNonInvocable ($LATEST of a function only its published
        // versions serve).
        _ => Readiness::Ready,
    }
}

/// A published version, before traffic goes to it (what the
/// PublishedVersionActive waiter polls).
pub fn version(state: Option<&str>) -> Readiness {
    match state {
        Some("Active") | None => Readiness::Ready,
        Some("Pending") | Some("Inactive") => Readiness::Wait,
        Some("Failed") => Readiness::Failed,
        Some(s @ ("ActiveNonInvocable" | "Deactivating" | "Deactivated" | "Deleting")) => {
            Readiness::Refuse(format!(
                "Lambda will not invoke a version that is {s}: resolve what its StateReason names (aws lambda get-function-configuration --qualifier VERSION), then deploy again; no traffic was moved to it"
            ))
        }
        // A state newer than hoist: wait for Active, within --timeout.
        Some(_) => Readiness::Wait,
    }
}

/// PublishVersion with a CodeSha256 that is no longer $LATEST's: Lambda
/// answers InvalidParameterValueException "CodeSHA256 (…) is different from
/// current CodeSHA256 in $LATEST" (not PreconditionFailed) — another deploy
/// changed the code meanwhile. Lambda gives this case no error code of its
/// own, so the message is what tells it apart.
pub fn code_sha_mismatch(code: Option<&str>, message: &str) -> bool {
    code == Some("InvalidParameterValueException")
        && message.to_ascii_lowercase().contains("codesha256")
        && message.contains("is different from")
}

/// UpdateFunctionCode refused because the function's current image is gone
/// from ECR: "The function is trying to use a deleted image"
/// (aws-actions/aws-lambda-deploy#68). No error code of its own either.
pub fn deleted_image(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("trying to use a deleted image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_need_the_user() {
        for code in [
            "FunctionError.InvalidEntryPoint",
            "FunctionError.RuntimeInitError",
            "InsufficientRolePermissions",
            "KMSKeyNotFound",
            "DisabledKMSKey",
            "InvalidConfiguration",
            "ImageDeleted",
            "ImageAccessDenied",
            "InvalidImage",
            "KMSKeyAccessDenied",
            "InvalidSubnet",
            "EniLimitExceeded",
        ] {
            let r = reason(code);
            assert_eq!(r.class, Class::Usage, "{code}");
            assert!(!r.fix.contains("re-running is safe"), "{code}");
        }
        assert!(
            reason("ImageAccessDenied")
                .fix
                .contains("ecr:SetRepositoryPolicy")
        );
        assert!(!reason("ImageAccessDenied").fix.contains("execution role"));
        assert!(reason("KMSKeyNotFound").fix.contains("another key"));
        assert!(
            reason("FunctionError.InvalidEntryPoint")
                .fix
                .contains("absolute path")
        );
        for code in ["InternalError", "InsufficientCapacity", "SomethingNew"] {
            assert_eq!(reason(code).class, Class::Infrastructure, "{code}");
        }
    }

    #[test]
    fn states() {
        use Readiness::*;
        let cases: &[(Option<&str>, Option<&str>, bool, &str)] = &[
            (Some("Active"), Some("Successful"), false, "ready"),
            (Some("Pending"), None, false, "wait"),
            (Some("Active"), Some("InProgress"), true, "wait"),
            (Some("Inactive"), Some("Successful"), false, "ready"),
            (Some("Failed"), Some("Failed"), false, "ready"),
            (Some("Failed"), Some("Successful"), true, "failed"),
            (
                Some("ActiveNonInvocable"),
                Some("Successful"),
                true,
                "ready",
            ),
            (Some("Deleting"), None, false, "refuse"),
            (Some("Deactivating"), None, false, "refuse"),
            (Some("Deactivated"), Some("Successful"), true, "refuse"),
            (None, None, false, "ready"),
        ];
        for (state, update, ours, want) in cases {
            let got = match function(*state, *update, *ours) {
                Ready => "ready",
                Wait => "wait",
                Failed => "failed",
                Refuse(fix) => {
                    assert!(!fix.is_empty());
                    "refuse"
                }
            };
            assert_eq!(got, *want, "{state:?} {update:?} {ours}");
        }
        for (state, want) in [
            (Some("Active"), "ready"),
            (Some("Pending"), "wait"),
            (Some("Inactive"), "wait"),
            (Some("Failed"), "failed"),
            (Some("ActiveNonInvocable"), "refuse"),
            (Some("Deactivating"), "refuse"),
            (Some("Deactivated"), "refuse"),
            (Some("Deleting"), "refuse"),
            (Some("Whatever"), "wait"),
        ] {
            let got = match version(state) {
                Ready => "ready",
                Wait => "wait",
                Failed => "failed",
                Refuse(_) => "refuse",
            };
            assert_eq!(got, want, "{state:?}");
        }
    }

    #[test]
    fn messages_without_codes() {
        assert!(code_sha_mismatch(
            Some("InvalidParameterValueException"),
            "CodeSHA256 (abc=) is different from current CodeSHA256 in $LATEST (def=). Please try again with the CodeSHA256 in $LATEST."
        ));
        assert!(!code_sha_mismatch(
            Some("InvalidParameterValueException"),
            "Description is too long"
        ));
        assert!(!code_sha_mismatch(
            Some("ResourceConflictException"),
            "CodeSHA256 (abc) is different from current CodeSHA256 in $LATEST"
        ));
        assert!(deleted_image(
            "The function is trying to use a deleted image."
        ));
        assert!(!deleted_image("The image was not found"));
    }
}
