//! A small Gherkin reader, enough for flagd's testbed: Feature, Background,
//! Scenario, Scenario Outline with tagged Examples, steps with data tables,
//! tags at every level. Outlines are expanded into one scenario per row.

/// One runnable scenario (an outline's row counts as one).
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Feature, scenario and examples tags together, e.g. `@fractional-v2`.
    pub tags: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub struct Step {
    /// Without the keyword (Given/When/Then/And/But).
    pub text: String,
    pub table: Vec<Vec<String>>,
}

impl Step {
    /// The step with each quoted string replaced by `{}`, and the strings
    /// (backslash escapes undone).
    pub fn shape(&self) -> (String, Vec<String>) {
        let mut shape = String::new();
        let mut args = Vec::new();
        let mut chars = self.text.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                shape.push(c);
                continue;
            }
            let mut arg = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => arg.extend(chars.next()),
                    '"' => break,
                    other => arg.push(other),
                }
            }
            shape.push_str("{}");
            args.push(arg);
        }
        (shape, args)
    }
}

/// One Examples block: its tags, header row and rows.
type Examples = (Vec<String>, Vec<String>, Vec<Vec<String>>);

#[derive(Default)]
struct Outline {
    name: String,
    tags: Vec<String>,
    steps: Vec<Step>,
    examples: Vec<Examples>,
    is_outline: bool,
}

enum Last {
    Nothing,
    Step,
    Examples,
}

/// Parses a feature file into runnable scenarios.
pub fn parse(text: &str) -> Vec<Scenario> {
    let mut feature_tags = Vec::new();
    let mut pending_tags: Vec<String> = Vec::new();
    let mut background: Vec<Step> = Vec::new();
    let mut in_background = false;
    let mut outlines: Vec<Outline> = Vec::new();
    let mut last = Last::Nothing;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            pending_tags.extend(line.split_whitespace().map(str::to_string));
            continue;
        }
        if line.starts_with("Feature:") {
            feature_tags = std::mem::take(&mut pending_tags);
        } else if line.starts_with("Background:") {
            in_background = true;
            last = Last::Nothing;
        } else if let Some(name) = scenario_name(line) {
            in_background = false;
            outlines.push(Outline {
                name: name.trim().to_string(),
                tags: std::mem::take(&mut pending_tags),
                is_outline: line.starts_with("Scenario Outline:")
                    || line.starts_with("Scenario Template:"),
                ..Outline::default()
            });
            last = Last::Nothing;
        } else if line.starts_with("Examples:") || line.starts_with("Scenarios:") {
            if let Some(outline) = outlines.last_mut() {
                outline
                    .examples
                    .push((std::mem::take(&mut pending_tags), Vec::new(), Vec::new()));
            }
            last = Last::Examples;
        } else if line.starts_with('|') {
            let cells = cells(line);
            match last {
                Last::Step => {
                    let steps = if in_background {
                        &mut background
                    } else {
                        &mut outlines.last_mut().expect("a scenario").steps
                    };
                    steps.last_mut().expect("a step").table.push(cells);
                }
                Last::Examples => {
                    let outline = outlines.last_mut().expect("a scenario");
                    let block = outline.examples.last_mut().expect("an examples block");
                    if block.1.is_empty() {
                        block.1 = cells;
                    } else {
                        block.2.push(cells);
                    }
                }
                Last::Nothing => panic!("a table row outside a step or Examples: {line}"),
            }
        } else if let Some(text) = step_text(line) {
            let step = Step {
                text: text.to_string(),
                table: Vec::new(),
            };
            if in_background {
                background.push(step);
            } else {
                outlines.last_mut().expect("a scenario").steps.push(step);
            }
            last = Last::Step;
        } else {
            panic!("unreadable Gherkin line: {line}");
        }
    }
    outlines
        .into_iter()
        .flat_map(|outline| expand(outline, &feature_tags, &background))
        .collect()
}

fn scenario_name(line: &str) -> Option<&str> {
    [
        "Scenario Outline:",
        "Scenario Template:",
        "Scenario:",
        "Example:",
    ]
    .iter()
    .find_map(|keyword| line.strip_prefix(keyword))
}

fn step_text(line: &str) -> Option<&str> {
    ["Given ", "When ", "Then ", "And ", "But ", "* "]
        .iter()
        .find_map(|keyword| line.strip_prefix(keyword))
}

/// Splits `| a | b\|c |` into `["a", "b|c"]`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cell.push('|'),
                Some('n') => cell.push('\n'),
                Some('\\') => cell.push('\\'),
                Some(other) => {
                    cell.push('\\');
                    cell.push(other);
                }
                None => cell.push('\\'),
            },
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            other => cell.push(other),
        }
    }
    cells
}

fn expand(outline: Outline, feature_tags: &[String], background: &[Step]) -> Vec<Scenario> {
    let base_tags: Vec<String> = feature_tags.iter().chain(&outline.tags).cloned().collect();
    let with_background = |steps: Vec<Step>| background.iter().cloned().chain(steps).collect();
    if !outline.is_outline {
        return vec![Scenario {
            name: outline.name,
            tags: base_tags,
            steps: with_background(outline.steps),
        }];
    }
    let mut scenarios = Vec::new();
    for (tags, header, rows) in &outline.examples {
        for row in rows {
            let fill = |text: &str| {
                header
                    .iter()
                    .zip(row)
                    .fold(text.to_string(), |acc, (name, value)| {
                        acc.replace(&format!("<{name}>"), value)
                    })
            };
            let steps = outline
                .steps
                .iter()
                .map(|step| Step {
                    text: fill(&step.text),
                    table: step
                        .table
                        .iter()
                        .map(|r| r.iter().map(|c| fill(c)).collect())
                        .collect(),
                })
                .collect();
            scenarios.push(Scenario {
                name: format!("{} {row:?}", outline.name),
                tags: base_tags.iter().chain(tags).cloned().collect(),
                steps: with_background(steps),
            });
        }
    }
    scenarios
}
