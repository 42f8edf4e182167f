//! Names for segments a marketer reads: RFM labels from absolute recency and relative value,
//! profile labels from a customer table's most distinctive features, and labels made unique by
//! what sets each segment apart from the others that share its name.

use super::Segment;
use crate::job::FeatureSpec;

/// Makes labels unique. Segments that share a label are told apart by the feature on which each
/// differs most from the others of its label ("champions, higher spend" and "champions, lower
/// spend"); only what that leaves equal is numbered.
pub(super) fn unique_labels(segments: &mut [Segment], features: &[FeatureSpec]) {
    let labels: Vec<String> = segments.iter().map(|s| s.label.clone()).collect();
    for i in 0..segments.len() {
        let group: Vec<usize> = (0..labels.len())
            .filter(|&j| labels[j] == labels[i])
            .collect();
        if group.len() < 2 {
            continue;
        }
        let z = |g: usize, j: usize| {
            segments[g]
                .centroid_standardized
                .get(j)
                .copied()
                .unwrap_or(0.0)
        };
        let distinctive = (0..features.len())
            .map(|j| {
                let others = group.iter().filter(|&&g| g != i).map(|&g| z(g, j));
                let mean = others.sum::<f64>() / (group.len() - 1) as f64;
                (j, z(i, j) - mean)
            })
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
        if let Some((j, difference)) = distinctive.filter(|(_, d)| d.abs() > 0.0) {
            segments[i].label = format!(
                "{}, {}",
                labels[i],
                difference_words(&features[j].name, difference > 0.0)
            );
        }
    }
    // Whatever is still the same (equal centroids) is numbered.
    for i in 0..segments.len() {
        let same = segments[..i]
            .iter()
            .filter(|s| s.label == segments[i].label)
            .count();
        if same > 0 {
            segments[i].label = format!("{} ({})", segments[i].label, same + 1);
        }
    }
}

/// How a segment stands out on `feature`, in a marketer's words for the RFM features.
fn difference_words(feature: &str, higher: bool) -> String {
    match (feature.trim_start_matches("log_"), higher) {
        ("recency", true) => "longer since the last purchase".to_owned(),
        ("recency", false) => "more recent".to_owned(),
        ("frequency", true) => "more frequent".to_owned(),
        ("frequency", false) => "less frequent".to_owned(),
        ("monetary", true) => "higher spend".to_owned(),
        ("monetary", false) => "lower spend".to_owned(),
        (name, true) => format!("higher {name}"),
        (name, false) => format!("lower {name}"),
    }
}

/// A label for a segment of a customer table: its two most distinctive features, e.g. "high
/// tenure_months, low age", or "typical customers" when no feature is a quarter of a standard
/// deviation from the consortium mean.
pub fn profile_label(z: &[f64], features: &[FeatureSpec], index: usize) -> String {
    let mut order: Vec<usize> = (0..z.len()).filter(|&j| z[j].abs() >= 0.25).collect();
    order.sort_by(|&a, &b| z[b].abs().total_cmp(&z[a].abs()));
    let parts: Vec<String> = order
        .iter()
        .take(2)
        .filter_map(|&j| {
            let name = &features.get(j)?.name;
            Some(format!(
                "{} {name}",
                if z[j] > 0.0 { "high" } else { "low" }
            ))
        })
        .collect();
    if parts.is_empty() {
        format!("typical customers {}", index + 1)
    } else {
        parts.join(", ")
    }
}

/// A marketing label from an RFM centroid: absolute recency in days (the lifecycle stages'
/// 90- and 365-day lines) decides how recent a segment is, so a skewed recency distribution cannot
/// make a segment that last bought half a year ago "champions"; frequency and monetary value
/// relative to the consortium (standardized, `z[1]` and `z[2]`) decide the rest.
pub fn rfm_label(z: &[f64], recency_days: f64) -> String {
    let (f, m) = (z[1], z[2]);
    let valuable = f > 0.5 || m > 0.5;
    let label = if recency_days <= 90.0 {
        if f > 0.5 && m > 0.5 {
            "champions"
        } else if f > 0.0 {
            "loyal"
        } else if f <= -0.5 {
            "new"
        } else {
            "potential loyalists"
        }
    } else if recency_days <= 365.0 {
        if valuable {
            "at risk"
        } else {
            "need attention"
        }
    } else if valuable {
        "cannot lose them"
    } else if f > -0.5 {
        "hibernating"
    } else {
        "lost"
    };
    label.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::RFM_FEATURES;

    fn segment(label: &str, z: [f64; 3]) -> Segment {
        Segment {
            label: label.into(),
            size: 100.0,
            centroid_standardized: z.to_vec(),
            centroid_original: z.to_vec(),
            rfm_scores: None,
        }
    }

    #[test]
    fn segments_sharing_a_label_are_told_apart_by_what_differs_most() {
        let features: Vec<FeatureSpec> = RFM_FEATURES
            .iter()
            .map(|name| FeatureSpec {
                name: (*name).into(),
                bound: 10.0,
                min: None,
                scale: 1e6,
            })
            .collect();
        let mut segments = vec![
            segment("champions", [-1.0, 0.8, 2.5]),
            segment("champions", [-1.0, 2.0, 0.9]),
            segment("lost", [2.0, -1.0, -1.0]),
            segment("at risk", [0.5, 0.6, 0.6]),
            segment("at risk", [0.5, 0.6, 0.6]),
        ];
        unique_labels(&mut segments, &features);
        let labels: Vec<&str> = segments.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "champions, higher spend",
                "champions, lower spend",
                "lost",
                "at risk",
                "at risk (2)"
            ]
        );
    }

    #[test]
    fn labels_follow_absolute_recency_then_value() {
        assert_eq!(rfm_label(&[-1.0, 1.0, 1.0], 20.0), "champions");
        assert_eq!(rfm_label(&[-1.0, -1.0, -1.0], 20.0), "new");
        // Half a year without a purchase is never "champions", however high the scores.
        assert_eq!(rfm_label(&[-1.0, 1.0, 1.0], 193.0), "at risk");
        assert_eq!(rfm_label(&[1.0, 1.0, 1.0], 500.0), "cannot lose them");
        assert_eq!(rfm_label(&[1.0, -1.0, -1.0], 500.0), "lost");
    }
}
