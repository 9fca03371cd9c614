import { Validator } from "@seriousme/openapi-schema-validator";
const v = new Validator();
const r = await v.validate(process.argv[2]);
console.log(JSON.stringify({version: v.version, valid: r.valid, errors: r.errors}, null, 1));
process.exit(r.valid ? 0 : 1);
