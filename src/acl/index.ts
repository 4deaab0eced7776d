export { loadLiveRules, ruleProblem, saveLiveRules, type AclRule, type RuleAction, type RuleEffect, type RuleStore, type RuleWho } from './rules.js';
