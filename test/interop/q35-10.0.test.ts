import { interopSuite } from '../helpers/interop.js';

interopSuite('q35-10.0');
