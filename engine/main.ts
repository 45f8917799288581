#!/usr/bin/env node
import { exitOnFailure, runEngineProcess } from './process.js';

// `engine`: leads every shard whose lease is free, follows the others.
runEngineProcess(process.argv.slice(2), 'primary').catch(exitOnFailure);
