#!/usr/bin/env node
import { exitOnFailure, runEngineProcess } from '../engine/process.js';

// `replica`: a hot standby for its shards; it leads only when a primary's lease expires.
runEngineProcess(process.argv.slice(2), 'replica').catch(exitOnFailure);
