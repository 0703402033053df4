pub mod gherkin;
