//! Repository-policy statements Lambda needs to pull images, built as JSON:
//! shared by `--create-repository` (which gives a new repository the
//! same-account statement) and the deploy's pull check (which prints the
//! statements a policy lacks). Pure.

use serde_json::{Value, json};

/// The two actions Lambda pulls an image with.
pub const PULL_ACTIONS: [&str; 2] = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"];

/// Lambda's service principal.
pub const LAMBDA: &str = "lambda.amazonaws.com";

/// The repository-policy statement that lets Lambda pull images into the
/// functions of `account` in `region` (the `aws:sourceARN` condition scopes
/// it to them). `--create-repository` gives a new repository this one, so
/// that a deployer without `ecr:SetRepositoryPolicy` can deploy from it.
pub fn lambda_statement(partition: &str, region: &str, account: &str, cross: bool) -> Value {
    json!({
        "Sid": if cross { "LambdaECRImageCrossAccountRetrievalPolicy" } else { "LambdaECRImageRetrievalPolicy" },
        "Effect": "Allow",
        "Principal": {"Service": LAMBDA},
        "Action": PULL_ACTIONS,
        "Condition": {"StringLike": {"aws:sourceARN": format!("arn:{partition}:lambda:{region}:{account}:function:*")}},
    })
}

/// `policy` (None: the repository has none) with `statements` added, as the
/// text to give SetRepositoryPolicy; a statement whose Sid is already there
/// replaces that one.
pub fn with_statements(policy: Option<&str>, statements: &[Value]) -> Result<String, String> {
    let mut doc: Value = match policy {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("it is not JSON ({e})"))?,
        None => json!({"Version": "2012-10-17", "Statement": []}),
    };
    let obj = doc
        .as_object_mut()
        .ok_or("the policy is not a JSON object")?;
    let mut list = match obj.remove("Statement") {
        Some(Value::Array(a)) => a,
        Some(s @ Value::Object(_)) => vec![s],
        None => vec![],
        Some(_) => return Err("its Statement is neither a list nor an object".into()),
    };
    for s in statements {
        let sid = s.get("Sid").and_then(Value::as_str);
        match list
            .iter_mut()
            .find(|x| sid.is_some() && x.get("Sid").and_then(Value::as_str) == sid)
        {
            Some(old) => *old = s.clone(),
            None => list.push(s.clone()),
        }
    }
    obj.insert("Statement".into(), Value::Array(list));
    Ok(doc.to_string())
}
