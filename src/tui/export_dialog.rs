//! The export dialog: where and how to write the merge, a progress gauge, then a summary with
//! the command line that reproduces the files.

use std::path::{Path, PathBuf};

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use crate::session::AdapterFormat;
use crate::session::DType;

use super::theme::Theme;
use super::worker::ExportSummary;

/// The fields of the form, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The output path (typed).
    Path,
    /// PEFT directory or kohya file.
    Format,
    /// Output dtype.
    Dtype,
    /// Which adapter's non-LoRA tensors to keep, if any.
    Heads,
    /// Replace an existing output.
    Overwrite,
}

const FIELDS: [Field; 5] = [
    Field::Path,
    Field::Format,
    Field::Dtype,
    Field::Heads,
    Field::Overwrite,
];

/// Where the dialog is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// The form.
    Editing,
    /// The export runs.
    Running {
        /// Modules merged.
        done: usize,
        /// Modules in all.
        total: usize,
    },
    /// Written.
    Done(Box<ExportSummary>),
    /// It failed; the message says why.
    Failed(String),
}

/// The dialog's state.
#[derive(Debug, Clone)]
pub struct ExportDialog {
    /// The output path as typed.
    pub path: String,
    /// The field with the cursor.
    pub field: Field,
    /// Output format.
    pub format: AdapterFormat,
    /// Output dtype (`None` = the sources').
    pub dtype: Option<DType>,
    /// Adapters whose non-LoRA tensors can be kept: (name, number of tensors).
    pub head_sources: Vec<(String, usize)>,
    /// Index into `head_sources` of the adapter whose heads are kept; `None` drops them all.
    pub keep: Option<usize>,
    /// Replace an existing output.
    pub force: bool,
    /// Form, progress or summary.
    pub phase: Phase,
}

/// An input to the form (the key table turns keys into these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The next field.
    Next,
    /// The previous field.
    Prev,
    /// Change the field's value in this direction.
    Cycle(i32),
    /// Write the export (or close its summary).
    Submit,
    /// Close the dialog.
    Cancel,
    /// Erase the path's last character.
    Erase,
    /// Erase the whole path.
    ClearPath,
    /// A character: typed into the path, or a space that changes the other fields.
    Type(char),
}

/// What the dialog asks of the app after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogAction {
    /// Nothing beyond redrawing.
    None,
    /// Close the dialog.
    Close,
    /// Start the export with the dialog's choices.
    Submit,
}

const DTYPES: [Option<DType>; 4] = [None, Some(DType::F32), Some(DType::F16), Some(DType::BF16)];

/// A path in the current directory that does not exist yet.
pub fn fresh_path(format: AdapterFormat) -> String {
    let ext = match format {
        AdapterFormat::Peft => "",
        AdapterFormat::Kohya | AdapterFormat::Diffusers => ".safetensors",
    };
    let base = "lora-lego-merged";
    let mut candidate = format!("{base}{ext}");
    let mut i = 2;
    while Path::new(&candidate).exists() {
        candidate = format!("{base}-{i}{ext}");
        i += 1;
    }
    candidate
}

impl ExportDialog {
    /// A form preset with the current format, dtype and kept heads.
    pub fn new(
        path: String,
        format: AdapterFormat,
        dtype: Option<DType>,
        head_sources: Vec<(String, usize)>,
        keep_heads: &[String],
    ) -> Self {
        let keep = head_sources
            .iter()
            .position(|(n, _)| keep_heads.first() == Some(n));
        ExportDialog {
            path,
            field: Field::Path,
            format,
            dtype,
            head_sources,
            keep,
            force: false,
            phase: Phase::Editing,
        }
    }

    /// The output path.
    pub fn target(&self) -> PathBuf {
        PathBuf::from(self.path.trim())
    }

    /// The adapters whose heads are kept (what `--keep-heads` gets).
    pub fn keep_heads(&self) -> Vec<String> {
        self.keep
            .and_then(|i| self.head_sources.get(i))
            .map(|(n, _)| vec![n.clone()])
            .unwrap_or_default()
    }

    /// Reacts to one input.
    pub fn handle(&mut self, input: Input) -> DialogAction {
        match &self.phase {
            Phase::Running { .. } => DialogAction::None,
            Phase::Done(_) => match input {
                Input::Cancel | Input::Submit | Input::Type('q') => DialogAction::Close,
                _ => DialogAction::None,
            },
            Phase::Failed(_) => match input {
                Input::Cancel => DialogAction::Close,
                Input::Submit => {
                    self.phase = Phase::Editing;
                    DialogAction::None
                }
                _ => DialogAction::None,
            },
            Phase::Editing => self.edit(input),
        }
    }

    fn edit(&mut self, input: Input) -> DialogAction {
        let pos = FIELDS.iter().position(|f| *f == self.field).unwrap_or(0);
        let on_path = self.field == Field::Path;
        match input {
            Input::Cancel => return DialogAction::Close,
            Input::Submit => return DialogAction::Submit,
            Input::Next => self.field = FIELDS[(pos + 1) % FIELDS.len()],
            Input::Prev => self.field = FIELDS[(pos + FIELDS.len() - 1) % FIELDS.len()],
            Input::Cycle(dir) => self.cycle(dir),
            Input::Type(' ') if !on_path => self.cycle(1),
            Input::Erase if on_path => {
                self.path.pop();
            }
            Input::ClearPath if on_path => self.path.clear(),
            Input::Type(c) if on_path => self.path.push(c),
            _ => {}
        }
        DialogAction::None
    }

    fn cycle(&mut self, dir: i32) {
        match self.field {
            Field::Path => {}
            Field::Format => {
                self.format = match self.format {
                    AdapterFormat::Peft => AdapterFormat::Kohya,
                    AdapterFormat::Kohya => AdapterFormat::Diffusers,
                    AdapterFormat::Diffusers => AdapterFormat::Peft,
                };
                // A kohya output is one file; keep the suffix in step with the format.
                match self.format {
                    f if f.is_single_file() && !self.path.ends_with(".safetensors") => {
                        self.path.push_str(".safetensors")
                    }
                    AdapterFormat::Peft => {
                        if let Some(p) = self.path.strip_suffix(".safetensors") {
                            self.path = p.to_string();
                        }
                    }
                    _ => {}
                }
            }
            Field::Dtype => {
                let i = DTYPES.iter().position(|d| *d == self.dtype).unwrap_or(0) as i32;
                self.dtype = DTYPES[(i + dir).rem_euclid(DTYPES.len() as i32) as usize];
            }
            Field::Heads => {
                let n = self.head_sources.len() as i32 + 1;
                let i = self.keep.map(|k| k as i32 + 1).unwrap_or(0);
                let j = (i + dir).rem_euclid(n);
                self.keep = (j > 0).then(|| (j - 1) as usize);
            }
            Field::Overwrite => self.force = !self.force,
        }
    }

    /// Draws the dialog centred in `area`; `keys` are the form's keys as (keys, what they do).
    pub fn render(&self, keys: &[(&str, &str)], f: &mut Frame, area: Rect, theme: &Theme) {
        let popup = super::layout::centered(area, 96, 26);
        f.render_widget(Clear, popup);
        let title = match self.phase {
            Phase::Editing => " Export — Enter writes, Esc cancels ",
            Phase::Running { .. } => " Export — writing… ",
            Phase::Done(_) => " Export — done (Enter/Esc closes) ",
            Phase::Failed(_) => " Export — failed (Enter edits, Esc closes) ",
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border(true))
            .title(title);
        let inner = block.inner(popup);
        f.render_widget(block, popup);
        match &self.phase {
            Phase::Editing => self.render_form(keys, f, inner, theme),
            Phase::Running { done, total } => {
                let [form, gauge] =
                    Layout::vertical([Constraint::Min(1), Constraint::Length(3)]).areas(inner);
                self.render_form(keys, f, form, theme);
                let ratio = if *total > 0 {
                    *done as f64 / *total as f64
                } else {
                    0.0
                };
                let g = Gauge::default()
                    .block(Block::default().borders(Borders::ALL).title(" merging "))
                    .gauge_style(Style::default().fg(theme.adapter(0)))
                    .ratio(ratio.clamp(0.0, 1.0))
                    .label(format!("{done}/{total} modules"));
                f.render_widget(g, gauge);
            }
            Phase::Done(s) => render_summary(f, inner, s, theme),
            Phase::Failed(msg) => {
                let p = Paragraph::new(vec![
                    Line::styled("The export failed:", theme.error()),
                    Line::raw(msg.clone()),
                ])
                .wrap(Wrap { trim: false });
                f.render_widget(p, inner);
            }
        }
    }

    fn render_form(&self, keys: &[(&str, &str)], f: &mut Frame, area: Rect, theme: &Theme) {
        let row = |field: Field, label: &str, value: String| {
            let selected = self.field == field && matches!(self.phase, Phase::Editing);
            let style = if selected {
                theme.highlight()
            } else {
                Style::default()
            };
            Line::from(vec![
                Span::styled(format!("{label:<18}"), theme.heading()),
                Span::styled(value, style),
            ])
        };
        let heads = match self.keep.and_then(|i| self.head_sources.get(i)) {
            Some((name, n)) => format!("‹ keep the {n} non-LoRA tensor(s) of {name} ›"),
            None if self.head_sources.is_empty() => {
                "‹ none: these adapters hold only LoRA tensors ›".into()
            }
            None => {
                let n: usize = self.head_sources.iter().map(|(_, n)| n).sum();
                format!("‹ drop all {n} non-LoRA tensor(s) (not merged) ›")
            }
        };
        let exists = Path::new(self.path.trim()).exists();
        let mut lines = vec![
            row(Field::Path, "output path", format!("{}▏", self.path)),
            row(
                Field::Format,
                "format",
                format!(
                    "‹ {} ›",
                    match self.format {
                        AdapterFormat::Peft => "PEFT directory",
                        AdapterFormat::Kohya => "kohya .safetensors file",
                        AdapterFormat::Diffusers => "diffusers .safetensors file",
                    }
                ),
            ),
            row(
                Field::Dtype,
                "dtype",
                format!(
                    "‹ {} ›",
                    self.dtype
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "as the sources".into())
                ),
            ),
            row(Field::Heads, "non-LoRA tensors", heads),
            row(
                Field::Overwrite,
                "overwrite",
                format!("‹ {} ›", if self.force { "yes" } else { "no" }),
            ),
            Line::raw(""),
        ];
        if exists && !self.force {
            lines.push(Line::styled(
                "The output exists: choose another path or set overwrite to yes.",
                theme.error(),
            ));
        }
        let keys: Vec<String> = keys.iter().map(|(k, what)| format!("{k} {what}")).collect();
        lines.push(Line::styled(keys.join(" · "), theme.muted()));
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }
}

/// Ranks grouped: "8 × 30 modules, 4 × 6 modules".
pub fn rank_groups(ranks: &[(String, usize)]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for (_, r) in ranks {
        *counts.entry(*r).or_insert(0usize) += 1;
    }
    counts
        .iter()
        .rev()
        .map(|(r, n)| format!("rank {r} × {n} module{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes as B / KiB / MiB.
pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn render_summary(f: &mut Frame, area: Rect, s: &ExportSummary, theme: &Theme) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut lines = vec![
        Line::from(vec![
            Span::styled("written   ", theme.heading()),
            Span::styled(s.path.display().to_string(), bold),
            Span::raw(format!(" ({})", s.format)),
        ]),
        Line::from(vec![
            Span::styled("size      ", theme.heading()),
            Span::raw(human_bytes(s.bytes)),
        ]),
        Line::from(vec![
            Span::styled("ranks     ", theme.heading()),
            Span::raw(rank_groups(&s.ranks)),
        ]),
    ];
    // Modules whose rank differs from the most common one are listed by name.
    let common = s
        .ranks
        .iter()
        .fold(std::collections::BTreeMap::new(), |mut m, (_, r)| {
            *m.entry(*r).or_insert(0usize) += 1;
            m
        })
        .into_iter()
        .max_by_key(|(r, n)| (*n, *r))
        .map(|(r, _)| r);
    for (name, r) in s.ranks.iter().filter(|(_, r)| Some(*r) != common).take(4) {
        lines.push(Line::raw(format!("          {name}: rank {r}")));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("reproduce with:", theme.heading()));
    lines.push(Line::styled(s.command.clone(), theme.key()));
    lines.push(Line::styled(
        "or replay the recipe written beside it:",
        theme.heading(),
    ));
    lines.push(Line::styled(
        format!(
            "lora-lego merge --recipe {} -o OUT",
            super::command_line::quote(&s.recipe.display().to_string())
        ),
        theme.key(),
    ));
    if !s.notices.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("notes:", theme.heading()));
        for n in s.notices.iter().take(4) {
            lines.push(Line::styled(format!("• {n}"), theme.muted()));
        }
        if s.notices.len() > 4 {
            lines.push(Line::styled(
                format!("• … and {} more", s.notices.len() - 4),
                theme.muted(),
            ));
        }
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}
