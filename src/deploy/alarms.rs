//! The CloudWatch edge: the `--alarm` alarms' states, and (with
//! `--watch-errors`) the Errors metric of the new version behind the alias.

use std::time::SystemTime;

use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Statistic};

use super::error::DeployError;
use super::plan::AlarmState;

pub struct CloudWatch {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatch {
    pub fn new(sdk: &aws_config::SdkConfig) -> CloudWatch {
        CloudWatch {
            client: aws_sdk_cloudwatch::Client::new(sdk),
        }
    }

    /// The states of the named alarms, metric and composite alike. Names
    /// CloudWatch does not know are simply absent from the answer.
    pub async fn states(&self, names: &[String]) -> Result<Vec<AlarmState>, DeployError> {
        let mut out = Vec::new();
        // DescribeAlarms takes at most 100 names per call.
        for chunk in names.chunks(100) {
            let mut token = None;
            loop {
                let res = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(token)
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
                        reason: a.state_reason().unwrap_or_default().to_string(),
                    });
                }
                for a in res.composite_alarms() {
                    out.push(AlarmState {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: a
                            .state_value()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                    });
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
