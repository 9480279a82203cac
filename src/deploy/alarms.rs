//! The CloudWatch edge: the `--alarm` alarms' states, and (with
//! `--watch-errors`) the Errors metric of the new version behind the alias.
//!
//! Log alarms and the held-back SDK. DescribeAlarms has three alarm types
//! since CloudWatch added log alarms (2026): MetricAlarm, CompositeAlarm,
//! LogAlarm; without `AlarmTypes` only metric alarms come back. hoist pins
//! aws-sdk-cloudwatch at 1.95 because later releases speak only the RPCv2
//! CBOR protocol, which moto — what the test suite runs against — does not
//! implement (getmoto/moto#9195), and the generated client has no way to
//! choose its protocol per endpoint. 1.95 predates log alarms: its AlarmType
//! has no LogAlarm and its parser drops the `LogAlarms` list. CloudWatch
//! still serves the awsQuery protocol 1.95 speaks, with the same operation
//! and members, so hoist (a) asks for LogAlarm by name — the SDK sends an
//! enum value it does not know as given — and (b) reads the `LogAlarms`
//! members from the very response body the SDK signed, retried and fetched,
//! kept by an interceptor, with the SDK's own XML decoder (aws-smithy-xml).
//! A refusal ("log alarms are not supported") would be the alternative; this
//! watches them like the others. When moto speaks CBOR, upgrading the SDK
//! turns this into `res.log_alarms()`. The suite plays log alarms with a
//! CloudWatch endpoint that answers them only when asked for by type, as
//! CloudWatch does (tests/deploy.rs).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Statistic};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::error::DeployError;

/// Keeps the body of the response the SDK just parsed (DescribeAlarms
/// answers are a few KiB: one page of at most 100 alarms).
#[derive(Debug, Clone, Default)]
struct KeepBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for KeepBody {
    fn name(&self) -> &'static str {
        "hoist: keep the DescribeAlarms body (LogAlarms)"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(bytes), Ok(mut slot)) = (context.response().body().bytes(), self.0.lock()) {
            *slot = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// The `LogAlarms` members of an awsQuery DescribeAlarms response.
fn log_alarms(body: &[u8]) -> Result<Vec<AlarmState>, String> {
    use aws_smithy_xml::decode::{Document, try_data};
    let mut doc = Document::try_from(body).map_err(|e| e.to_string())?;
    let mut root = doc.root_element().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(mut result) = root.next_tag() {
        if !result.start_el().matches("DescribeAlarmsResult") {
            continue;
        }
        while let Some(mut list) = result.next_tag() {
            if !list.start_el().matches("LogAlarms") {
                continue;
            }
            while let Some(mut member) = list.next_tag() {
                let mut a = AlarmState {
                    name: String::new(),
                    state: String::new(),
                    reason: String::new(),
                    kind: "log",
                };
                while let Some(mut field) = member.next_tag() {
                    let slot = if field.start_el().matches("AlarmName") {
                        &mut a.name
                    } else if field.start_el().matches("StateValue") {
                        &mut a.state
                    } else if field.start_el().matches("StateReason") {
                        &mut a.reason
                    } else {
                        continue;
                    };
                    *slot = super::outside(&try_data(&mut field).map_err(|e| e.to_string())?);
                }
                if !a.name.is_empty() {
                    out.push(a);
                }
            }
        }
    }
    Ok(out)
}

pub struct CloudWatch {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatch {
    pub fn new(sdk: &aws_config::SdkConfig) -> CloudWatch {
        CloudWatch {
            client: aws_sdk_cloudwatch::Client::new(sdk),
        }
    }

    /// The states of the named alarms, metric, composite and log alike.
    /// Names CloudWatch does not know are simply absent from the answer.
    pub async fn states(&self, names: &[String]) -> Result<Vec<AlarmState>, DeployError> {
        let mut out = Vec::new();
        // DescribeAlarms takes at most 100 names per call.
        for chunk in names.chunks(100) {
            let mut token = None;
            loop {
                let body = KeepBody::default();
                let res = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .alarm_types(AlarmType::from("LogAlarm"))
                    .set_next_token(token)
                    .customize()
                    .interceptor(body.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        DeployError::aws(
                            "reading the alarms' states (cloudwatch:DescribeAlarms)",
                            e,
                        )
                    })?;
                for a in res.metric_alarms() {
                    out.push(AlarmState {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: a
                            .state_value()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        reason: crate::text::external(a.state_reason().unwrap_or_default(), 500),
                        kind: "metric",
                    });
                }
                for a in res.composite_alarms() {
                    out.push(AlarmState {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: a
                            .state_value()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        reason: crate::text::external(a.state_reason().unwrap_or_default(), 500),
                        kind: "composite",
                    });
                }
                let kept = body.0.lock().ok().and_then(|mut b| b.take());
                if let Some(bytes) = kept {
                    out.extend(log_alarms(&bytes).map_err(|why| {
                        DeployError::Answer(format!(
                            "CloudWatch's DescribeAlarms answer could not be read for log alarms: {why}"
                        ))
                    })?);
                }
                token = res.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Errors of `version` served through `function:alias` since `since`:
    /// Lambda publishes them with the FunctionName, Resource and
    /// ExecutedVersion dimensions.
    pub async fn errors(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        since: SystemTime,
    ) -> Result<f64, DeployError> {
        let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
        // Whole minutes: CloudWatch aggregates by period from the start time.
        let start = since - std::time::Duration::from_secs(60);
        let res = self
            .client
            .get_metric_statistics()
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .dimensions(dim("FunctionName", function))
            .dimensions(dim("Resource", &format!("{function}:{alias}")))
            .dimensions(dim("ExecutedVersion", version))
            .start_time(start.into())
            .end_time(SystemTime::now().into())
            .period(60)
            .statistics(Statistic::Sum)
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(
                    "reading the Errors metric (cloudwatch:GetMetricStatistics)",
                    e,
                )
            })?;
        Ok(res.datapoints().iter().filter_map(|d| d.sum()).sum())
    }
}

/// A CloudWatch alarm's state, as DescribeAlarms gives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlarmState {
    pub name: String,
    pub state: String,
    pub reason: String,
    /// metric, composite or log.
    pub kind: &'static str,
}

impl AlarmState {
    pub fn firing(&self) -> bool {
        self.state == "ALARM"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_alarms_from_an_aws_query_answer() {
        let body = br#"<DescribeAlarmsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><DescribeAlarmsResult><CompositeAlarms/><MetricAlarms><member><AlarmName>m</AlarmName><StateValue>OK</StateValue></member></MetricAlarms><LogAlarms><member><AlarmName>api-5xx-in-logs</AlarmName><AlarmArn>arn:aws:cloudwatch:us-east-1:1:alarm:api-5xx-in-logs</AlarmArn><ScheduledQueryConfiguration><QueryString>fields @message | filter status &gt;= 500</QueryString></ScheduledQueryConfiguration><StateValue>ALARM</StateValue><StateReason>3 matching log lines &amp; more</StateReason></member><member><AlarmName>quiet</AlarmName><StateValue>INSUFFICIENT_DATA</StateValue></member></LogAlarms></DescribeAlarmsResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></DescribeAlarmsResponse>"#;
        let got = super::log_alarms(body).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (
                got[0].name.as_str(),
                got[0].state.as_str(),
                got[0].reason.as_str(),
                got[0].kind
            ),
            (
                "api-5xx-in-logs",
                "ALARM",
                "3 matching log lines & more",
                "log"
            )
        );
        assert_eq!(got[1].state, "INSUFFICIENT_DATA");
        // moto's answer (no LogAlarms at all) and nonsense.
        assert!(super::log_alarms(b"<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms/></DescribeAlarmsResult></DescribeAlarmsResponse>").unwrap().is_empty());
        assert!(super::log_alarms(b"not xml <").is_err());
    }
}
