/**
 * Real traffic for the Redis parser's tests: every send and receive of a client's socket, in order,
 * captured with `strace -xx -s 1048576 -e trace=connect,read,write,sendto,recvfrom` of Debian 12's
 * redis-cli and redis-benchmark 7.0.15 against redis-server 7.0.15 (started by test/peers/redis.ts).
 * A record is [direction (0 the client sent, 1 it received), the call's byte count, its bytes];
 * where fewer bytes are given than the call moved, the rest is left out as a kernel capturing
 * that many bytes a call would leave it out.
 *
 * The COMMAND DOCS reply redis-cli asks for before reading commands from stdin (172,298 bytes of
 * nested RESP2 arrays, read in 11 calls) is the same in `basic`, `errors` and `transactions`: it
 * is kept once, gzipped, and stands in those captures as `COMMAND_DOCS`.
 */
import { gunzipSync } from 'node:zlib'

export type CapturedRecord = readonly [direction: 0 | 1, bytes: number, data: string]

const COMMAND_DOCS_GZIP_BASE64 =
  'H4sIAAAAAAACA+19WXPbyLLmOyP4HzARJ+LY3RKPuFPnzkwELdG2xtquJHfb90UqAiUSVyDARgGS6Oi4v30is6qwFoACF9nu' +
  '1ku3LAGFWrNy+fLLX3qjg2bjH+12s8FsN6A+CzyfNhu/tOHXw2aDhYsF8VfNxj8GB83GCT5CzcBYhE5gLx1qMBowg7iWgW8a' +
  'wZwaPmXwV3cGfzRs1yDGA4Um+vgVk/If262D1gH/ceZ74bLZ+Ee32WA0gA4dNBumt1g69NkO4NXDbrNx8eb8l7O3xpPns8Aw' +
  'CaPG05z61Dg3bIYfNolv2S5x7GBlePf4K7YgjkNZgF2Bbp7Jh91wMaU+PAdDaME3mg3iz8IFdQPWbPzSaTZ+GTQb/+g1Gy5Z' +
  'UDFNFmWB7ZLA9lz+t2C1pLzrfJDtHv50y5bUvLVdiz43G/8+aDZ+GaXaip7XbaLNp+reITPoXbvZ+FUuAm9labsz5cq1+83G' +
  'JSwHTgj1H6mvsxh8DVyXmmKwuUXpwZq03+anrp2bumGzsaCMkRlNDXnQbLDAx45nB+ct4bPEaTb+MWo27kNXdEMxwG632Rgb' +
  'pucGxHapb9x7viFfMExvsSCuxXJDHuaHfNhsMNO3lwHvUW7AnU6zcUyX1LWY4bkGC6ei9ZY8RNFvcBiw5O1B3Ps/fVp8wHqD' +
  'ZuOK/90gjoOrJV/Ez8EvZvYjdY0lWTkesbYxpD4u4vnb7FmKj0euD/HXFSemlz4xsMDUt4ljf6PW/iNxwsINkDkgg2Zj6Tm2' +
  'mT4j/WbDc6l3X7pfMt3q5nYjvhqyeappmJpl6NP9wHugLn8q8eP708/XH3MtDZoNsoQNod3UoNkYX15Ozo9VZ8SnS4eYVLux' +
  'YbNxNbk8HR9N4MFuYqfxFVLJ8VGzceRTElCDxKfkyQ7miQ0WTZ/xBjq3Z5ieRfcMi4q95Llvt7H5eiMuQYw3pucy26KwE+DE' +
  'Lm0HRawR2AsKW9KnVuhaxA3eqrfdaKszWbi1sts7MeP7MEWFwg1kcLQ2FnVooBYCnT5IGPhzcnWmKyPeuRtOeZnMzoyu02w4' +
  '9tQn/mpf/KpgcMmNZ4WLpViQ1Mj67WbjOFwsUbbFMsV2A88gRiwkjKntEn+1TRnXPdSWceL2jUYjxIRqpTpipWDLpsa0lWUa' +
  '6otlvp0s9ZKOsoKPsJVrbixTOyqZmm+6QqaOr7+eH+Va6jUbtRrqNRu8nYwEtFmgvmgPmo1Tm4Fqeu/5Cy5oyNQLg/y9+/Lb' +
  'r1K4dQ7Sx3J/SYKA+m6ZYiWnCnSU05N3V+Orr+fjs3JRl/7qqNmAOyIn5MoWZtRs/H5y8/Ho4rj0S+lle7AdRyU/eu1m45Od' +
  'WR/DDH2fuoGzAjuDPlMzhF+3tispU/2bU0cp33qHzcb13Hsy4IH70DEC+hyIbQVdtuz7ewp9NVJK4lb7mZRcLCC4gXIdHfVB' +
  'zwxC31UcgILJ9UPXBTkntIGEHrBnWKFPtqcRpAbzzaePPnFndLpywAj6BfTJjHFzMIiGQwx8GE7UgsLZYtz6ZJ4fUAvsvD24' +
  'SuFjpjfzyXJum8ThL+0Znm9Rn1rGve8tjLk9m1PfCDzD8Z6ob/DDxPIbq9MatQ7zhhP/5H6BNdtpo3h3vNmb87e/gk0L6te5' +
  'MaXSTItlA3Uo18Rsrn3HgxH2bMHjvC0fZ4ZaLePkntu+oGkFxA2MN7Q1axnEeSIrZhD2AI+D5YRbwAYbu30QN4c9PD05O7l5' +
  'u2esvNAwiWtIrc2wA0MO560wpS3PvE2ed4sufWoSflHBOsa/uE3M56DVaUmXhNDhrNspbo1+s3H3X1fj8w+Tu1hfvbua/HaH' +
  'M3H37uvp5MudkZCeWWHay901tc3wg5ya1G02FuS50KrJP2wXimp+WaU1MO/+ntHg1vRCN8he21PHMx9ytyquUt3LvJc1a/h3' +
  'U18cNhvgJJqB/yDzQh92eLaHyefh19Sce2pdqt1sTMy5l7BAkrfXTv0Uvbp+CvBGENvx0I2iGMyw22xcB8QPDGKYnocuKTix' +
  '8iVjSoMnSuE020z4Y3ADey6KLjsAc2fp2CZRyBt5PhITwG1s7tXRH3s3v90GzUZA/BnV2WedZuPmoq4V3svqeXOPBZonBzxc' +
  'nl+yIXOa7r3n1zAAwcS/uDqqoxOByjvN9qlK5X13cXVT4xsgAha249iMmh7XGAoOWNqYvTk5m1x8LhcDg2bD8ZynMFDqM8Nm' +
  '49hmS4esDOYtKJrlYQB71edXDxzWK2rZzHikPuNnL71Z+/nTmtyslebKsNmIm9Ya9m+Tq+uTi/OqYX/DOx/+1FHpmdr6hEI+' +
  'dVTyqVwdaB/0dq4ORIoAH+/cBkfjSsx6JyNbwEdlWdSKb9g9uF6vjy6uJvxHftPCrYu3zZ3B51flRx/u4tKFWQcZqy88WOAt' +
  'de/dAV+xaZnvUS2T17Weh83GdMVM9A3re6zEkqhscaEx6wsmXNP8VHRBDXvUbqgLbrTf6s8QP4hb1Hw2XZ5d60NZMX/A7Wvc' +
  'Akx7uuFvYGLjNrguHaOMrSlEXgdMV8qNP34kDPTUgwDRjt2lHILFWkhK9vSE7BmAHTVo8T3QSwmfyRcQOJf433Mpc758SQqc' +
  'WHzxTnWGqRY+TSaXNzen8o1WXt71OqkXPkxu4GuTL+Mb8b1L/DH3fmTfwr3ugKEoWog6Ck3JnoIxOaVGyOApb0aDOfUV4rK/' +
  'I3FZHnvJnPpDVKktOxfmVMvA5PptIAQ7zYarL7M6zcb5F1Ubz7Xa+KIWelktuELofZisIXcUMoA+L22fVEy73vz2VepUHS2y' +
  '02zAjVCw0NvQUzvNxqX+F4bNRujaz/sQE9pXfeYw8UDORQzHuWiJsh7WTvJLhaMq/dyl/ueGcITpMgicOne/EGuKb3ChhIp2' +
  'MLXVPvDBAEU+MzzfMB1KfO6SntqBQQKD33WRipm8EjA+bcFDqnuho7ROp3awIMva1unWpeA6t3hebKY2My4SC6fg1JwWAGcO' +
  'ebiBuuheE+4FZizDqWOzOd4GhjknrksdZixIYM6l2i+j/ejfZ4rZVt3Cy3DKwqlqtof9qkCE/BSH0zg2uKttZhDHp8RaGdFA' +
  'oc8tTQtOFZ5Ia3AFmBYdZ42q8dSv22jt0YVwIwsVW7FM/RHYfQvvkaMvCgw+NM3sJBYj0ti2YQhCbGfnhiCM0QJHODzhLSm/' +
  'b1ovdAjVHlDLC6ew6Fq+VfkwuOJ8Co+6z2pbHtcUHuB67J7huRAq4tgwlz7BLw3Lo8xwvcCgzxgyrNZ1h6AfuNS3zRrKbsLQ' +
  '7orNMRo0GzdzKjFKhgvhBndGfWGuA7LOoL7v+XBkXYN5oW9SXN8EDg2xAcwgAn7HyIJqwdnWWswc/MWlT/WBbAO5cGrAWie9' +
  'bNtckh98VmY0EFZaLtIFSK1SKw33hS8ie3C1O5Yhr69tmW+7COx0D5qNu2uwlOKozv9Cy0mu1M7WrZ6VBPJm+m3pLVEmKeRN' +
  'GyLF8hKJFwNGxO+TeIQYYARcKlwfPOaI/n/fWMAvYmnOIDJp4G1phG5gO/gcXMqPxHYIF4SVbtfqu2eQ8EGuefGU+xZFnw6b' +
  'jTvQmL0wuINhIOx46QOCxSDMIAaX7obtsoASC3e3awiNq6UDkFhnJxSrIXmdQ/S+8FYagBlnM660dNQIr4D6CxvWUZ5d+cbG' +
  'kq4Sz/lAV4yrnNR8aJXeUgetroTXmiZdBizGfd890FUi1qqlDG53YeBdtJkKnPgfhKxECCEE8u1Hiho4n3DbNWKjbuc3PsAE' +
  'UPodJl1N+x2M9K1aOhDqtWYPQck+cS0uf9ST1eeTJeWPXGJ4zVtEmjDKKFIQ9agD5QdYkB3MJdwE/aTRTjJgIvcMD7xjTzaj' +
  'hmozkynznDCg8QXIcckMfGvYXqt0LQbY224qzCEdKcYdNhDv7d3pUqOaIfSs9TeocGuDUJoy+xtV4jEPojiXQj5I2U4daoJk' +
  'tkhApoRpqxIa8WgItXuuHXi+mM1099JWM5hkPv0jpAxNGJPaCRtGxNBt1/ApcYzYH6PfzyG/Hm99NUBhCLqX5/MNm7wAiQEw' +
  'wz00uzw/eRcaV5RY+2hvPBLfBsSNd29cX1zdaKHTygVOe4DI6fNfz36BG/vsbYm8z97X0GHsK8hHD7u8pzQZZcgwaqFl/D6n' +
  'bnoOwOoA24mPfM+Iuwk9gcOrOD+D7ZyfjNdWyx1QklqT8Eq++1oerPrLwnR2NadJF7kcbTc12sTNHv14K17PS0oE6+0AxdwF' +
  'FLNZx/M/vlYimAEiWQfBfDzBdvIOe88XWEl9iMnp5cdx6TRETamSqTpJ/RQVqNWyyu+7PYN8S3pPv9lwAt9eqIfYazZufHsh' +
  'pDdIQbxGltS0721qGQIdUj3IHkCxmVLNGR5UKeKRDOWBwe/tmFNCKkpkiQpTkUP8PVNTpXwAJH6CaG3ubZV4aMNmLIRtdg9A' +
  'o7PPpzcnWp7VTrMR+MRlJM7iyKHwR6ncvfiL/EJLvC6+yEziFm6fE9f0cfWIAw7FANaKGuCekauqRAprK8ltvn3ab1H7oY/U' +
  'XxkmcZwW14e5GcPfCKj4PqKxbdd0Qgusdup64Wwe+RbhbRYBfM3QZx7im4WPYkrMB/jnQatChwDAr9DbHYdjLlutF4LaDpoN' +
  '3nFdWIXO9ZUWnmfjm6OP9TCA1Vp7ov2ji8/nlbe+v/SWzlJkHuVU42E/cjKhPkdYtOuSKunSx90O2GxIsXLRpOICL+Uo1Dlg' +
  'JXJut75BBH2fnl38lsZ8n3z4KLEZp5P3N6Wg747KP8s96Rt5edfPBm/zFQ3dJwj2qeQjIHLeewDFTSQm4dPUQgNNJ/KqIxXj' +
  '1QM0bhFAqDsocz3PCZsb9zZ1LJ0IJXyHYOptXuiB7hELPWKKZv/FP7Yktm8QMNj3DOZxQQg727KM89yDjEdMgkR0BZIfgA3A' +
  '4jsp8nPkXi1zHvTEiAAem3eKYVNiY2KD5S6ynfgRYF9iP27zzux14q4dlaYgl1sHfKnjVr+HlSmyvgHQdeI+eg8QD/Ijszrm' +
  'BNhC3lE7pR2k0qCCOcEoOE8v4xBaxW3Xy+bLJfqnM03DZsMNF+Jwa91um/pTO0UGmMIo8mc6xA2FLcahE9stCJ10dEMnALR7' +
  'jZz8FSMncDdYVO3ShyihyIxPLnd8+bANbx9IUK9I08XPpM21ckdzjzua+2V3xe7vh0Et6V3OMiOtIqWOoLaKYBLRqcyWxKQ6' +
  'dlGV8/PwJ7KNNE52Z5TCH998vZzcZchlKu+bv4NplHVOxq1WJr6Dx+fr5aQQLVlKPgQqB2gcKk190G02Ji5cJgxVE+OPkPo2' +
  'ZdE2lImJqKoaphOyAPE9mOBnuDyfPt2prtKbJl4t1+L7zca3QsfFoNBxkbg0E659F+4V5pk25i8WAN0Ux1cD6Pbq3vi7ujcg' +
  'j7MwbD/QCdtnANmFUdGfPXY/aDaexRgKWEyypGeQjx8uqG/ga6yY+6xfBACjZLEN4jOYOWA/4/0HwiPZtcKxRKxH0SAE4CA9' +
  'qNbGY3lZzPmh6FUZgZKCd0kOupJ3ScywiYxeasBRL0H4tbvJLDo90hjH/RorOdQN4Jq8hTvzDhGsVhniov/d1iaXXmRbRXHH' +
  'SsdJ/u3iL3EQ6a2tzywHbkUVb8/iIVo/bd6es0/XN1eT8VnNTPXkqmpdGSA7Juc3VyeT66vJ+LicJqiXECgs8L1VCYUa/n0H' +
  'G35UHdbjcyCNfGz1n8wA4cn1Fv5ndMS/uZycvm29ELxVZ7vjKopJZjSwLaVIGbS5Pzg7vTzQYBB/agfAT8VjExaFOxyixyfH' +
  '3G/8onKnq0Z5pQVQiejpvYqe9UTPzgUC0Mak7r9SJaM7Ut2DGDCrEhIFpCt/BxUjnuLdEp9tJADoI3HYnBTiWSKogXEaEoMH' +
  'AiRqEAw+HStCh+UvE0EQH1orfgCutjlpv8YO+KsQEVebjOmwwUxYj8mgeAKouSGmp5qVM8e3okG3kuEr+Engx9WsGrDOoVtE' +
  '2t3mo04zyW+GLB901csTeAFxCuIwEFgXiZz0+6Qx9JuNOcgvtTI74h4RSUyK6pPY0CKQsUnMo1uwoQE0LmH18O7unByH6Dso' +
  'SZ+GsExl+nScjisTqTdOlu5XJktHOduAopZjKE6MzhH+iPfXiMOARGGB71D10QKVV7rRHOrOgrlcSz3URlcJACraQ7vOrayH' +
  'PcCL06cLdYxqGF0WyRjitjNc+p2qrSO/WD+UOFCFEnlz3yGWOAC6RJ5YVHsT94E5AXmeFfjQoSg2AqaadPEjcw7IABE8UWI/' +
  'FOGIEsq5jpLSPdG+rQtyqYbic1S46Rce2WMqQjO4WcR72Rzf6Qq27nYzeneUd/atoqLMcKSuKJOIRRUWlonJDvAqFKn8OkJf' +
  'JzjFb8VfPr399eJNIsMmUXgmC/KI6szY7jIMUozDn5RYkOxzTKTg6OBGVPOg5TPdrIDNi5scpSVv8uVCnqg9mwe6TJG/TwBE' +
  'eq1r1eQJsshs5tMZet0L01Dk9yBy9OHD1eTD+GayWemSLp6gOgkq15/PVK1kSTgqWjk7OVe2Qp5rtTL+IiwsATU9UKUlSqhp' +
  'LPrcPMAZJKGNZwI3y0Z2XfugQNlLa0/wegtA/nj2qI2A6pguW8SeU3jsxJs8H6799gXzOeTcaOVzgB+F97rwMofAMjKUFVCn' +
  'Hki38ANd/ZOlQ7jfIXAbuYDb0sAWVHz/Roq+PSQS3DPuPkRY8pu7l1odbb60Dan50nBYPanT+4GY+XJtzII6bXy4UbXh1Grj' +
  '9Eb4oDxHmUk9aKcyqeExee5t5No3qby5IVwP3lHMri1QYgdciZVkijWzqgdcyZyqY2PA7KurZsY2NddEdqdz7iraZcmRFusE' +
  'hxzd9eTbgXpte8iC/cPgu6LaOPmM+fVtpqoc/nYk9nlqvWpjHcYuh5jD0vjs2s94DbCALJY1YDzDHy2hFM0GCGUU2zMwB9fh' +
  'NPDJdyiQuRPf509VAnOAF+O9rS6CCYlkWbiUiADxt0QVm2LMVKcm00VdzNSBSJHj3YFSkTSAIj5K/whGPViUkkUSEQeQ3Sfn' +
  '7y82HkCiFs9B1K1ZQYoYxGE+JPV2hi7S1NQuiU8WkFq++eQOEi42V+mcLfiysfS9R9sqDcxI4TPoJwMzZGpjZdnAQ6aZ+IQL' +
  'rGXyI7aLDkYApepEFA4BsCle3gFPZmHz2UivWOPvEunV2Ya9xOkovrKRgw3/LHWuxE64tx0apxLBNUQXHqCPk0/V9SrqHZ2i' +
  '7EpgqQSzqXDLpgIc/HD9HAeoPyw4QCC5EudHdW60QnFQVjN6fWf5jjrnp27OI78AIDpaolD0FCHSV13iBXSJbrPhmAURWUjN' +
  'tl2LM7WCQ9hbLPj9XlCzaljTThokap2LBeC+Ycnwyr1SeMGyNt8PnT3YCUswRR6ps9KhXOKz0t4o/sOf6my6dA6t5Ys8nZzX' +
  'wKV2AflWy0t5cvylXvvZ/peB285OzjEJo94g4NaAWwvpwetMF7wIFUJ0volQBOo4nhpHftBsfIQbfU4exBWK1Z/KcqrWqdFW' +
  'BZdpH0Ai7NL3AqimdmcsiBXjOv+D32eJPH9kT4jKWSf5AHwKBcWYTBhCxSXu5D+Z9Na0NFW4JAeFzhVUp1baqNmQI9b2FGLB' +
  'BMYBfregsj55vqXBTQa3zuebj5tRk43ib2temTBEVSeLS8TjJkKS+lIMYzrucz25qSp9i+fUdsGLdu94JCi8nKNkOh4FgGdL' +
  'HWlkIRBWla7vH8uRZrsqR1oycxsUsQTNvk/ch0IfyTos+9g9PbX3lWZ/Z2xej3EW7l8BYzuQn3tF2QosD6MBL6WQzx0WRmpk' +
  'i0ga6egX3DCNSyy4op5plP5fXF6hXUf4dXQJrtWoCOXVDeuwPevxuxDTz2gQFbU8KKJ4JrGZIpdG/CvmdyQFSJperTuq023r' +
  'hNQjpyVvqWWIchgJDlmY6gUJqLMyLMlLGcnV6H3e7J4xDQNjSk0SMmpgUggMLjlsDvJz+W7kI8ff8zKmK6BFJ8s9YE2DCtdT' +
  'GhW5ppYRZawj3CdZFPxHFOldSL+xSiW6s/TUVm5vmIppYqcQuCjLE0UXnVeIrQc7YKCNwRA10c9rMhnvRTn/5JH6ZEYRoCWY' +
  'ihklPu8u0gzI111K+CtzpMnhPwcECILuEw3Lqivwm7Pxl9PJuTAzoGfSC7aXMikWZGX4IagrcZ11CH+9VEZrNYYjI/sgrI26' +
  'mob12ms2rsbnn+pYrW28Mfdx11C2PSKQtS3wAWKQquxgwLncL6hfJE0Pm40z+KtxnvB5f1wtqX/qzU69GXIzQTiY2e7MQbBx' +
  'S+lTPsyoru1mYw7NON7M8ZRytX8oTglcvaIPyS9zCYgKLZQYSW9DPb/ckLvlNk0oOZQsi1sO8n0rruE1SAShOD1Ygr8kcvpz' +
  'i0Kwiu2koPPLGmjVIOwR1uATuPkCWMgl9e89f5FI3pWvRBiRyIjhAU1+++lkD5TWAOz2sqSPcfQo5mR+oSyow2YjGqUGvXix' +
  'Nl3JtQYWM3VND5LCbxXQcbVvJuJR13HAyOa3BmHPM4mJKJy634o+Zl1UXWiCLG8ZCW7vie1oYGmh8sFvk6v3pxe/bwal7fFv' +
  '12Fp//1qfKmE5JJa1WKvxzeq3uQmoKI378cnp/moilyV28qNXLlHIcE6s0crzaTkMFU7tfsyO7VmIc/swPOH81btBFMPHrjw' +
  'zo+usIzEjzD+Qh9eVk+y6DScFbKeZwE0+PQM9OvCaH97m6gZBcM0WzFzYYnwxIx6PrHskE1X/EYUjLIDVX2ocYJKVlZogUF9' +
  'mFxcjY9PPl+/+3o2OXs3ucrBM+GGa+ejqTPqldZqqVOpJaIhm3oh5w2Zes/SPDFt3wwd4kNAkCC9xsIOuE1sUkAAcgZVnAnh' +
  'pcx9yw7oIvUhvBNbO6LxhuKqdx8mF9eT8dXRxySV97uvfLIFAvv91cUZn/VSTu/D76JH5Z/nc1xYzDQn4UPXDjSlcR6E3W42' +
  'FnUYOc5U0OeHRR3o8ydlG/e14NPvlRDshV2njbMTlaYGu8j0svGisqYOeTD06OLi6riGgTni37K460KbRAk+dXxyfVP/SyLX' +
  'ttaXPo6vN2b2WydY2VHpheuQBuateuKuapXiOf9abwL+olWE0PS2WVzyT+neyxShTKDLkCNbGsgYydw4JfpHs4hhNhzyiCut' +
  'KrEB4hNgDonyciQC9WNGGi+nIRM80Fu49L2Fh3ylwMe9IADnb22xYt76N7PEXOZvZvjN3dXk8vTkaHzx/k4HP9/DB1gNq2KQ' +
  'ldxzjwX7gL6oYTrm4pXQiOZVDaSjnq9t2AIBlrfP86x1u5dPmPJqJUxdqA5CtgsVUuTifCITJTx+haicZH3p2mdR/B0P+Yx6' +
  'bEkCmzjC308YQMtdi/hArIMt1vH6FKvEo8MkY37k9xESR9R5BN+6diigNBH6h6M+6HEHolo0D+qWmty8GttPXk5y+FpO8rWc' +
  '5Gs5ye9VTjK3f9fGdXdyH7++ubiaVLKMPZGlNS0kg71+IktmBE8ex6tGtYzzl1ivpmo2GqhD1rykNSRRIDqR8dJdCLoQBWnw' +
  'Z5dDVRCRMPWCedyzluZxxYlr6x5X+UKnnOMNgGtqF+Cw2ThD6J68qqPqO0L6C7V4R7ZC90es5Fbb9ACk5ELQGeYjcV1VFSSp' +
  'pqHbjNdhqAxcDtdCRvIiOJ/eGr8akvrmPNIGPuW1AQmDwJ28VxtDuafDerP0lktNRN/LI/TaZbA8CMXAzK1tKn1Xnpadl4IY' +
  'NhuJkmDKciUVZyFbDqz6WKxV4QtTDqTB8su6gOHNNvuuakFVr2nxxcsx8oWQgjQ8XodpogAg/8MzTWgE18BhUUTYCLE1iVvJ' +
  'lRvbFtfnrhkSuNuB+8gLsDnS7cCThQU1ypQGTxTswCev3B+xmc8h6XJ4IZL3odQFatA48xc6+vC9spDSBow/f/NgE9pc4UKt' +
  'pA0OI3AsuMZ9mzj2N2oBfpgBPDRFthoDq9M15h/oqrU5CVanJ9FToH2bJmVMAu55/S6LM0URxxAppQiMF1027KDEx8atJW/6' +
  '39QMsJbQ0mPy5uJji9w8UJhXwG+BOrhlvM+ApCUnRFTZKe3YCeYhJ0f79eJNO058xbg1NoMVf5m9WDqrIhK17Ymxeydkc25Q' +
  'dlTIgUQCU2zAJbMIpR23se8/QnuWJztIVYNCxTJqJb+fyqbsKOoYt1Pk4+Prr+dHdwbOACzbwrMo/Af2LMQyssmYmao+FW9X' +
  '52L0wWGCBEdb8MVoNF3l+4ABFbkJ8rK4VvO9ZkPZehJF8a2CIWDYyTIEfHfy1J4okAPUqUbkTc7xpYaLKAHF/sbJYriSmKFF' +
  '3XvlRX3lRf0b8aIW1rnoKutccObR10IX37XQBRodaqunk6XFigzfH57CG8ggCkvJQnUEdSnZREHubAXZQuqiUQ0z9rV07N+2' +
  'dCxqRIJhwKHPSuTOYJiwzfDZZL2FjHdwD7xPsLNMb+aT5dw2iWOILFqNbK1KZUjkNO6UaIC3JaVwyzi552ZTlPj1hrZmLYM4' +
  'T2TFDMIeZDpkfH20D+LmsIcYS367Z6y8ELNgZQosIJsiJ8qusMLgDLv7r6vx+YdJGih8OvkS3xYvdK4UCkGx+0Zx7ycf/uuG' +
  '+fGsFFIHAFPKtfIOjMkCpM/C8ihDAEgxWcCP6wiuTNMH5FwYzNX0SlDZJQzm1A2Ap5dK1r/IOVA5E9UkS4PK4qWSgYcZFr3H' +
  'RHspKoDNp1THy5b5HR+dGixYOdR4I5mAUJLJTxTVPR3V5REqpp8quKdq8w5BW05hzBYKLF96y1iGijpCSj18WEsPHw0FLqts' +
  'yZIh2KJ0j5y6/rcMp8JM0xoO5R5wzSlcyv1mw8/Z1BWupCswq18mqDqf0QCZZ1WhpsN0QbmEpv6Xqy0HSAvIzy/kcVSwdcee' +
  'J50qsDqICiwtcmr8arw53//0NkJUJIoJ4fyc6rJs8kshQLSFYkq5SheFmz+pnuGOsgL3WPfHEwN52jfQC3nEXz9IdcDzZK6P' +
  'Lq4m15WYMixepd45XXXdqo3rVx4miD+z2yPGlhHfsl2CTLrSgyqLT8XGQu4C+F7VLXs8OF5Y9EwXI/AzFD0bwkXuMlqA7IZg' +
  'zgn+OVnQaErvwUUPbot7nrrJM0tyBY8U4rhTQ5XodDvaPj1QPX0I6DEq+8coTcf+lvajFwBfkw1pBASj+sDBhgPkPvgF5Z8S' +
  'VG1w9RrUtaJ/A3L8DXDwvC3iWoLNXNIiXsLY5Bug73lbghHv7Qg+s5lCAsQYOL/aUmzQbLybvEdQbL4zuINqxbfe30B+c96O' +
  'wdXVRy1UFY4aNBtOMTtZN2Inixw2Wrp0zSJfQ0xyuP41OgLX8ghEWBQQlECxZXADmX/942R8nGD9gvbZHv8TMEmB4MUtiM95' +
  'vnEzPjnljkiHAEEPvvAfuJd1MlkihABOxk/LFwlbe8bIo7pUGKihYwiXzn3P9ULmrAx4lq8GCYjAE1s2e9hiAl2R8QpAoo6o' +
  'tpyMZh99nBx/Pp3cCd6vgvsz49cZAavknFqhQ+uk8MqPKVFOnVJ1ZYQaRfH5GgBM/ZH6vCbCku9vcIRyaAYJ8JLF5Rf/Tm/E' +
  'yFtUef+UUwK2+3wl9tDDg3aPvFN4qTjyQLGOkuktOSoQQtOSn8810EvYMj6zECIOwLwG8JA0fZ8AnXDfCVlAugNAc7J5RO23' +
  'LeMC7tknm9F8mpF01SbjzqpKyiWxq+6O3PxbID5JrlIXHLRqU7GNVBwYRtGOWFWglUYjPfJO0CSebMdJVkfm2WJcIcToDAZD' +
  '5x6ar1JjFCUZiRtt7z3JbmE/2lbIS2PJtea+LZvxklRy4WPokQ79IFpaCWe953Or1sBorWCf5DRw2HMYmux0EhtVUh7yJZR0' +
  'R9TMzls7cc3sHVzKo3aRgytfelPDtxXV0X6hK7Mi+622ngS3KrEs9ZUpsD6qyuWcbHDTJP32wSBLxSatEGIh1yXzDEk+SCxQ' +
  'Z+K4kUzllFFVCEHFLPyxmZyqUf43KnfeHir4ieCxXAGjNtyT/xnCbZYiRfchkMaoKyhtc+nagWfc0yDKo2YxWatkd1iQZ3sR' +
  'LmJ9VxzkaFAb4KtfaY4a/xgepmmOkNIo+jfmMq7BfVRVZQl1adRaWbgEmgM8vuFySX10IAFC3IAdrHQAtV+plF6plF6plF6p' +
  'lF6plFQZ9Bnjfl2sbp2U9o2/2cmdVPxm1flBgy9SUQR1Yr70aFeDOvGVMnFjXQKAFJWUiTEYqgp72+2n8zzOv0qvFq7cHQqO' +
  'O5WCcLCjnEmon2cHoUUL7/wcTsMhQZ03XrWKV63iVavYolaRv5jWVSvq4Ov/PryN8NQ3BB5AlF+d8dVWgw8yeV9+XLtFARjg' +
  '+I8tUYYc8LjyL5/SqIVcxpcEKWRTvPaMT0pAdC4V7GfEqgBwEFQN3ZNWDe8dyJqHakhFJ8/SzR9PlLYsq3Hfq48qrVnoHvyY' +
  'qGryfv0Jao+aQwIKY5+4LPBDM0gycT7NKffze0jJueIho4IhddWoLd1qpJVIERig5wJJ/C17sJeaykNXdeV6bp0r90KZeOYB' +
  '3K0GY+T79yr5lRtJVSLrp5NLUXtArKrr7dNH2yxAwrRFxXO+M/FB2JeYL5xIxMmUZNUVWFtbW/DYu2TqUGtthMd3XNbkckB1' +
  'OGrZUvrlcrkwR80nnJjM9QL7HkDoWOoF35OCgy/YyTFyBrurbdf+BXkrehy6QtFRXYK9ZuMz/zske/FO4T+pxQFTEcmaDEcI' +
  'T3dcrqlkW/XXGUS/I1J9jLLwZk4WM80C9PzFfdvSvdagtApE1b0wuKW+7+1CXxpGn9DenMNm4+bkbHLxWYmqzne0AsA0ubq6' +
  'gAIN7WiK/pTb2HbvPdV2H8UZYvCIv8B9bpApVIqWXM+M2cBAK9cLTX6TxLXkNAXUYLPLB+4WMSpH8Op0yriDOBdrwS7bwk3f' +
  'qwzfK7+c8k0MhG9iwHPqcEDdiIQidO0/QiqbubOtO45QT1BPyNPZicIecssadzdfLyfwhhNk2CoE/XX0yh0kleTblus1irwl' +
  'd8SfPe4v6OJuz7gLvED+6BDL8kXgBiXkXRJKz0v+yl6dHCv6FN1dUcLMnU/ZEtpGbVJ+yJ8y+ZnpUn4k0043PTbGwmk8NmUZ' +
  'pk76khoBXbW/IM4tZy2/FVTnt8twysKpRiZ/r9mAyS+TpetSEQ1k5+qAJM8vrs7Gp8oILo6wTltn42sOk8xJPzFNdaSf4FpX' +
  '9Uwx2RU9u/z87vrzO8WCNhu2Tqn3TrNxcrxGxnul5qR1Y5VFy/s5ea6GtrWbjQmqaICJsGyGP+pIcREr3Y4G0xfItpZx7S3k' +
  '0WdYDtR2A9+zQpMmuZjil7XorDFwSoKQ/YxqaN4tqLczEt4ziF1cTY7q+OngOPn03n4ug2okT9LV5P3Jl+0xSk9Nwmrlh707' +
  'GtdyRMLqQ6H0Ot+4uLw5Oa83id4yqKPeDfAjqN3V+YrrOZ63rCffTy8uLivpAoQMebB5Olxee2o3G59skVWV8JAgPlb6WX4U' +
  '1amvUJ0g+ZRf+4CV5VqGwbXaluJx+A/qIxGiOYmBThOC3fGb8s6AFQGzCgNFXMXKvS7v+UPkR+OBLOMOa6zcyZfQJ3gn7sy7' +
  'VvRnFsAKCIEsUo6BdeMJCk/ALJLAntoOl5ZZVQ1uirvT8fHxVQVMOydS+WStLVJBXi3/nSsrkoJAq+N+iQVRpLa59GmfL6Cm' +
  'xVZcdXSgJGiqJ34VKkJyQ5VEsTMqySCrY+Lqb6hhanWlmgBsMxVztD0VU+28zBvKOHd1RP/16fi3iYoFZhMVVq3rb1WxXYsN' +
  'ILFlPl/LadW6izQOdbp9EDx1wBz1PgARgfgLGwTNBs3GirJ/ZWoSFatD4NA9m+her3PqLFWuFiiUfj33ngx44D50jIA+B8LT' +
  'wvOupDcuFSLYhjtO6UQpcgkBWbXkJs77hFK+nuwl3dq2zyd2ZIGAVszpKM2jHLtka/ilNp3SOHqzJCFTp3ihkz/wlkBQAby0' +
  'yTKx3B0rq2Ngbh3YTeBMVMj3w1Z/g85WIWPAhLw7Oj2ZnN8Yl+PP1xPj96uTm8kdj0Yg8N0gAFZJQHDgTyXqRkcVllR5Sstq' +
  '5fSaDfhMyc24icne0avmXXGr4Ewpw+iOUyuMfnqa9f7LjZU/AFi/jIULmtxZiWIrPHsItGxsw9rSCe0JBf73Yu4c+JrsRno8' +
  'wutQmJ6nCnMK6SOjMp6PaXNJwl8XxKkol7btUIxOGcCy/akDtljVoG/oNhtfgbZhG4X2kiszowFvKr/TwDiUrvW8UDUS2lia' +
  'wftwKwEwFnVMkTHdjim1Xqhniv3QyxWejxvbL9XR4E4OXRZOmenbU1pYQQLvD4hqUFdGXhaUMTKjUCkDfXuCJosnuJhz4rrU' +
  'YTrUNUm9NDfu4YGeuc4M4gAWdmVEg7F4NpboSkszziwe10ksKiTjRcIbn7gPGjVfI/wqd3WIek5V1VPWooQur7zwnQrAQnp6' +
  'cRmmUX/NMkxRgS8DkpsdTNaDarqPxHbI1KF/xzJNfV1tqBjJ+1rX6Weq6zRoNp4ZDWx1HisYhWMXqX58EQvhCA3PlxWWOdtL' +
  '4FOyKCIN7hdx/1CyWM8ekCdx0E0h5akb+DZlt2gIiEjsgjzfWpgZb93C31e3EKguS0fdVX0Zh7CcJ6+Mc7QLiKbEgLQWHdZw' +
  'cn5zdTK5Hh8fT47LhJieF6RzgFs3N4k63gnozdn4y/HkdHIzOT5ZozdYeKykdhXclGleKhT2tW7K9jpkcYNOsi7ydoofd79b' +
  'yat17uQFXYiDqWQLy0Jb+eOGZZOZ67HANlkxELRucc+asFYeXjmUQ/gT4M6euQ9xW6YyLjrSN4bPkcDzY5EoXtpwAMC7mxgA' +
  'fGsR8vRwmDRQS/ineaHl0LGAboM53pM4ZWIky9Cfqe0jQMmwB061Eo0CUbkOBRC4XM3vOpB2NJDduil7a9MSgVQWXbQ8M/CU' +
  'KM0uWCRhsAwDJge+9L2pAzlpPlVCGTboUbz6xRu4L2ZN9CYEs8ywKDCxsd30BT9RWEFvwgJ7gczJc5ruVGHNhbq96lZGcRmB' +
  'x9kPVcwiEbq5Hp9dnlazX86L2bxBPVKwecdlH9Kk3virKlrvLRUy3BXLC45Bk8lAhwNchCEUqvGQO5xSMQis4kQCm19vsVTS' +
  'JwbfkB0t0qc6Kp6JgKB3MkGDyn1QZdqw0gPCIi/UBh6QAZZiKWK06rWLqrHgNHNtVHLR67iNvzfd6BzPE1OLxE7S32OnD6kh' +
  'X9zNSex8j5MoqhDQ58Li5Wm5BUtOn5c2LxBTfEl0tkUz292REcio6XGNZDuccCCYllXuWcjB0HPPSqdszEcUO2xFsZnNHbbt' +
  'fleDKl98LRk4tZUu3AIKAM7NHTWTeEGaYisW0IXxZgoSZSW+8VZXBOpU5KmWgZhFCjprSd3AYQX5+cbFA/9GZOl/3VqCWANs' +
  'UVTbDAzy1G3K6zaLWefnO1ENbMO7RpzvktMt8i9kQSSMir5oKfXK26kI7H4g+eYL074HvULO+a3me/9Q5PR/w+xuqABuz3ys' +
  'nqkwENA3HXgLKFQGec8+cdk9QAVQhxU5jrxus+0Kjj+IRgpOec+l26g5DQUQkPdduu6JGSAlr0GfqRkGFLhNjz+fXf56PDmN' +
  'nZShb9KoW1zgEuNqgtxE8qkAGLOD6KmWcU35DbREpYLvKUYTQCIwQdIFpVvG2GEwaM5VCXTS8UxF1ebhY09e9CUGu3JJfTC8' +
  'uNBImUO9JFA6S7uHcYKji8uvIjwA+MjxUYSSZq30y4MUbBtf/jT5eq0AVYN7Yph/evz55qPiaQn46PRzT3dKwEqHKm7vucd0' +
  '6d97zUYOzpg6kJn78ZAfOs+/pYtlsLpNWsbrhdI2Fd1wzgr7UhZRO2g28jCIXur+37emNfhh18CIAVd2nVR92KcKnHHNAM4w' +
  'oquqCxweH03W+PwoN8ckrpWWVbPWTW7OE7nrFAZLgoE/33xU+hiHdZDywBQrUc63yh4UVgfEs16/Ilo1flEDeF2/rFp24JuS' +
  '6/WaDRCkyu010LWeENb2WOBlPmg2zhAUIlnI5c0Kl8yUMLo5R/rL+lQ6zUaJgEJgEr9pC73uWLjD9wkqfFz1kGqBMhYgMza6' +
  'dQJABWisrPWX+jxTh+l6Er/MfwcRF7X/rHeYGZwoiGBmR+mZuEZEl6Kk3B17WAk8k6pP4BmO5z0Y2Gg1T0085v2q/InqUwIq' +
  'oJzBGQ1AIyeuJd9TAuwnz9zdEJUpJCaAdw18SZiLxLgPHSc9wRtPab9XNaXRzEk0Yfzp5FaRHAzFBWzcoqOA9Mubj2Tdc6BV' +
  'tYTnw01XGrlYo2bj/cnpzeTq3dc694raW7LwoFbKvm5SD2RLXfBKKZnGRs0GBIFnPOas09D46PRofLOuKy6h2VyOb24mV+eZ' +
  'DVMY6IFSRFqyhUvQPSwP5jicZd/1og0LGwBPTmtzIbuu5KnEU8E8O473xL3BUOUrURcgOZjAM2Yi+gVxfhiw/GTr5UVcOyHi' +
  'RIxVEZWX7CtVJ3DTxUnn3ohuvXjelW4f+7nbQTl5h5lbQfcSWEuH2OQWAMDY0lsi2lLlnauGC2O1U3s2R0+YEjqsm6RVRceY' +
  'gFv/sm7J+c0Av7vyr1YjHQquoV6z8VxY5Wg4kovHMnWvBFKS+9XwTwgvhdI+cf5dlh868oUJbOMez0cCKpBp8uRFjcYNnBwz' +
  'rI7Nw0noXzWpD3A3/JPlxRCK1saAWF55J1nrRVQpgmFg7TUeDZd7AxvaM3w6I77lgOImHbwcpwshk5faC3l6Gz1HO15VxbjP' +
  'gU490kQMfbpKRDr4Mv6VoS1aoE/umxB5FXm9Jy0oZyJ6xMNwuYqne7WzKTq1ik/1Kq+EVN5EqzSZVHwYKsAIL96dgW74gPpL' +
  'HySBQcAvzjMc0O9MiYV7ypX7rOD87DSiUTczA37+Frpo66rKhXFX9S4raveEFfSrTH3BCgE5vuFwEUko+1sUO8jTCmvddUIK' +
  'quLguhkvP1LgatBsPNFcBfsS3ODvEyhff62pOytIR8hsBldHQDWsSwisfPhwNfkwvplsZl52cWvWyZC5/nz2Q2fr7L74OTZz' +
  'z6hzH9ACfwdyFhak8AQY+5gZH1dL6p96s1NvVpTDAzp8NiO13WzM4U3HmzmeEl7VbTbO/zVWV91gK2YuhLHwrTCYnoQBxmdd' +
  'qus7yezYNRYQbm3Tt5dBYUJLNnXiNCQGfwWAWS6Z8cu3hBo8FyY+lB8tKvi6TgZFRzb6570Tgpakwskm1AgJ8hFDiXV1/AXS' +
  '/ekFvatGEzN4FVtUsheovptzqkE/0U+nm42vv54fiTgy/xGnASG2wEex8CwwTnymV4wYioJDmeWXZJHIf7CqCjkMVElDXqch' +
  'wCNiO3xr8T3keEQtAwDMfOoRK2PyxacCpJu3m53UHxbtJFH01HaN6SqIdRbRg6lnrVo6qfgJaVCSgC+mSHDjKb0zETWenAPO' +
  'NQDwfleAPZQcOOscr5SHS/TNotNQTZoBSqCE8+JTMXm8AKFY8jS2dGoC6Hdvy8QY3R0RY6x9fLZDsNGN1rAEog730tGcmg/c' +
  'qUEBrpSWojs5f+2DA31RjgBm6OIbJn5K1XSWwoJxvFH7reEtKUeU68F+YZ3mpL0ObDA+wy/uCNY/LjC+IncAWMt5v6kscCwt' +
  'SJ+4lreI9DOBctu42vEIak3ZwTyi+ALvYhyM4IXqPVkj3lA5CiK3EEeooecOmylzFUjhA4W1Exc/vndXVlH++yWQqUVnMYTR' +
  'dEJOgFiQlpKvUIPPlxVxUaEoos9srHpCcOAfnXbUpIxa2C5zvKAQHiDKCEDuqYOIEAzzRnIr0irQZ8hb2nRgvUOtFPEI/mwI' +
  'n0MlwgfOKe+hbhJJxb5BiICYTny0YkL7EbFdZizR9O54ZvWpjqrmStA48bHfe34Rgh6ih1L+GS7qL1FUwLMgHqH0cu5yaOCo' +
  '8ixawimBmeuphd2/J7YDCgHPQ1bf9YODguUVL4skZgyg2I9ck5N1y12uTm06C/3KDIJ0V7Y0X8nNgLyt2NJApQydQgEPQYIi' +
  'toA0AaItz8lltzUnyZ2xZg1TqR7ka5hC9di7o9PPwG1rCNbY67ttTesoccbARoYjqY4zI/MVRrP4rP6TGd6Ti3IjRfi5zfls' +
  'DxLdI7bjPRZciHAw3nu+iah5ufaBJ8HoQDlC3JA4hmyFxxqZ2AitHYuHHD+uALXvoJwQvAoTUcd38P7i6kiJBArIA+Vzrl+l' +
  '82b8aXLxGxIGJ5ePWJbcWwoZDt5qxuyZi7lw0YXEOBGGSe1HXlNrG8e139cDgEW9MBIzrmeLlN5rJcZIUsjNiW8pT6JMGYtw' +
  'T1Lzi2YMb8EFWS5td6YFmNNRl6onTPYDZW5Uf0QMhwaFSgsg/97ZmMkSzzny/0WIrh0I6g01uUEuohBrw2sXP9aQ2OkQz8nZ' +
  '5cXVzcn5h82bOjv5cDXeQlM98F4cTwrqr0wdWofC/Ppm/A5AiilRYlGnWJT0BLVGQoYQZoQuFjQH3ffvI06StpgUvz5xi9hf' +
  'NpDBtUXKYUdv0lBrw04kc85YQPxAzCXwD0CadWpiWzrXMCRRYUv78PItda393EwXl4ouLhiRFyYoHaIv6VqHI6CZs/YrjKTE' +
  'uRB6T7GbcFPNuP99bSbOmM7HuqA0KGRMR01QWoPyVgo8Yw6eijl5EJWVZd7Jti+XIqeVJErqpZxWcYk70fjtNGS3YDuVOrK6' +
  'qjSUTMHZDfINM0cl3mVR73SdXb3KxKl2N7mHWYGd38H6ApgALWCtRwl9Y/P1O6y0bB9cMHjw3LSMmxjbirhEETAxiPH+9PP1' +
  'x/HpKYcqYb00en9PzUBLKh0CsM23bpl3H+zAPOjx5utEND6Or46V11K2h1WRkYv3NwLclNAK903Pvbdn+3TpmfNCpEHE040P' +
  'h4JtBt+JKTR2rCQq2LoRRp7sfqGYHubEdEBLXDxynJEUI0nD9gXdGZsL7cTIp+FiKdd5pPRpW4883X5OE/5smApDTvD2fAsJ' +
  'qePY7oPS1uKgdA5UJlFpWMBL3BxdGvgaz2AUxZGXVNo/CF+I+vFCFthR1gLrJr1mQmUeqOrdpwzKo4RBWW1Pdl9qNOt714bF' +
  '3rVBwrt2DaIOfWupK7yTv8LbET0Azs3JMVNUpe1FqJRE1UqXBk+ez+neaECQWCGqMpvUcF48HKl9cBKdLCoGBKjgS4775c5B' +
  '0cH8xY28fFuVWkmfJiOPQpYWVUERXkMZLoDtDi/FThXoHoS/LJs97Er+iB1eXD3jKC0MZZWiLQn8Nc9j0r6UNnmxfbmpYf5q' +
  'Y343GzPhx4MIYmE0t5OuqhV7PHIKi4rtrP6+HVRp7BwAJgKe/JuVOo0CD1BohK7U5cXamSgsyBXb2qbw6MM9xi2lPKfwgTSU' +
  '0vVYt11kDf409Zfe0lkKjGmuK4ejZuPSWwKsRyamCOQJT02BFw07SJJAoI6VALLYwX+skcHSqZPBsoXwXVRINadgwCa9e3d6' +
  'dvGbLN6KSJUrSAUQENXTyfubu5RX8MUzZLpKdy2yTW3GCrQ2kV97nbSaQ6jdQx+jSyin6o5iwAkx8LES1PoeJKdhf/ZS5Wo8' +
  '36I+FRo/5KPyXO6n7aDc2we9GJ3y67rJpyIfp+BxfraivNOtb3qw5e7+62p8/iG96Se/xfv8hep79MW1qHsjgmMjyJTRLvOM' +
  '7TyVJKKnUuXdHjQbR95yVUC6qxDw5bw5sQ8sZidEbJnnOKKe9l7xbetysBSm8LaMKC+WX50if0WrrMuPIHtG6xKSZZC8x+/q' +
  'Vc7dlBGspJxQJBZzTvNRTyUWUzywUfIyHmdIpU4xEceqHfwJr6NH/PBmCdbtvkbCSNRPyVoqhJtxcs+3qekhQWFgvKGtWcsg' +
  'zhMB+hz2IAmX4/zZ9kHcHH4SKzW93TNWXmiYxMW2bAuK13B4a0sjPaUTOQLoM6h3AM3CWX6xKkdKKVgcHsAKR8UpzbuufTVq' +
  'Npi4k9WhAMn8IhIr0vf3ppjmboFZAbdqgpu1tbM8NPjDjHqMEt+cR/zTuUPbBsf4f4bUX6Wr5/lwWTOg9UOMPbS0JIFNHFGr' +
  'MPCMexrw0i9i2jBIgcRLlPAM/an3jHw5hmn7piOYRrNc1jjhQm9/oCutMs5dHJvyrA+4H+LXKB1Zt3bTzLetfeLYM5daBvoT' +
  'YOgwBBwQ8dHFgGs4J0saZ6QTJo4+kDYVEetySgoxSVEjGqQ9MblpstZDuFwCRzGjRujaAUc7K/bScMuk2JvfsEpsAujAa9OO' +
  'VlezyqhM768uzs4mZ+8AXZa9oUfNBhSYtoPQorcOCfAHDcZH2e7pxfkp0FhVu1oOE1/SrL0InVN1KflGLmWomEVMZ2b5wS2a' +
  'AJ0WfGLZISs0ttKwv3dfr8bHJ5+VOVSw0dfGRAG5mb5e3WycqabyYVEn++qTso0a0c5Os/H+RtXGwq7TxtmJ6kKZes+aq9pV' +
  'Ft20rWCus6iAyvv67uKLKjNynic+KN7Krztgsx2QU7fQAbEDcADUnGdmrZrz18qcY4uyWkmTxxNsR0OvLHaW1wRJr6Oy5tlF' +
  'iLuqNV3nX2tYgxg78HwImelvPIgOAhn88cl1pZKNhXsoUQOpIFVfwi4SFX54SglWewI/4+fzky/IHc8CsljqeMB0mXurtCvQ' +
  'frl2JcD0/zbuzr/c7Rl3X/C/HyL36s3dS5X0RNZp137ehxnZV5UUOkw8oOR4gVfsCjbuWnVaK8UrJCc/10pO/qJq47lWG1+U' +
  'bcxqCdgPSgHr1Grj9EYkmxfBzsAahGMQZdJiDl3gxb8oIGYBm7Ndp+JVpxJ/Jr6s5ktSQslgz+brVK0bcdyFW6K8ilYf3Fa0' +
  'gH6i3Ym9+S6FpB4G0dukdRgzaKGLiSXcVzOQfIALnRNuRXoulVVAacRLhzSrfoLfT7AXHhGXx6Q2JxHsDDsIQ0h+wIAR2J5L' +
  'rX8ba7q/9sBDtaAEg7EkML5cTcbH+/AEB78a9/Yztbh/C/YaOrOMcw+L95GA0+TCl96dXhx9EkIWHgwZNP5lfHxsPAG1xZKs' +
  'jIs3Z295CRHb5fERvlH9R24yn4kqXoxPGgjtJCUikNihuwJgfACJKRDYO3Y8ZU1KVNccx66qDZfVmmHC6nl9xfbUMFeh6NjN' +
  '1WR8dv0deO62wyDZF3FjNbthT8luCDXaX8kNfw5yw0NwHQDdBH5SnUqajDYAMUVUekkgNdiSmFstBDHABC0W+GoIpCSfN/hD' +
  'IItialbkKkRN3CBBQaytXbPAZafbVu8tQV8UVR3j0lx0I8Kdi4ZQHju8ZDPS5YpSpdH9Fb3Pm90zpmFgTKlJQiDGhStQMLFE' +
  'w+YADZezyfCR4+9tZjyCr9mcU7LEywXCIVMaRUSolYj5QcEy8SbbLMrcKcZuHjQbdx8mNzzO/HJ8r7XiyYpQShpc1QXMAgSD' +
  'pisMIiuBNJDVUg+3INpS7NJ+XURCpz3cOSJBEbo72zR0h5XiCkN3gv5jZxCIgRIC8e4rhvxTMIiiK0Pu/G4nRXIT4wbuIia7' +
  'Av7Ure9+BYtnsdNbQdaZfDhj+24RSaG+7/WKcoFG4t3fMxrcVnmfahUlrIwqDOR3t8ceA921A65oKdGal4IeYWoHyM8U0W7F' +
  'WFghw3Uowwb4uQVZFt7E5291EtkOgR9BdKQwBp1LUYbQ2KZETluu/DoAzZI/WZBwKwreKMCRiD1DOYrvV2sbJWpsu1/pW4gk' +
  'J/A1+uQRiqTKWiKCwlF2kgS8U6CL2AADeaAFEln8I6W7C70GhyjxEy/kapBTWXBaoDR2cenzfrei9Dl4GxLGYlkp9MEPXApd' +
  '2+it68oBynNZAkaR9nYISLZQlAwoUGxSKEz4Wcb/keCokCB5jQogg16KIWwdfeelfM5bvJKxOFM4dWymzsQEtr1LD/DZskQ9' +
  'p+kQxek3rz/fa1fXn5eOpETdeCGg4gQS0aE0oiOb95FoICpGX11zvqOyiOMJ0EFXQX1iPn2FhwUWgvqssFZaJ3KSZMMz/AZR' +
  'y53OlqoobgvnBBy1oRutg1owdJqN68Bb4o1BXXnJiAmEAjoIOhVbgEsC5M6Rm0C3YlzxthxW5pnIPUkccFavMnuTpDukXYYL' +
  '36rYWnpluEbNxjPwOCYqhqY96d3YvkxQeYnMp0QBHwkDRVsqXFDfwBk0ROPRw9w5h35k4tN4tRB4Bt6JMBAue2JCWr1DrRmH' +
  'o2/mS+8OejXworGrHEpdxxoMEf4L7iFPvChGt4RMPHggcpuD/1siowsFjnydmbCkFvewgzc9tg9Pjk8nAo7WMn6XHnjJM+CL' +
  '5Kr/Dlkg63PACuI6RVoVFpnjq4MFuXEs6LDxQxcvKnTTgBfvP2Ju1j3E/8V5qjiJ6NGHGbED1MdhhbkTSHxAB/3aTxfehiHK' +
  'StpCh0phYiPwMGu9nEsnoURX4l2Hssoj2xiZ0FfYn/w+37cth4oosUbUoddswLzWJ6PfKU64pr2qqEQptplukCGdNiFi7CNV' +
  'BeJEep7gY+fRKt8Qc66ls2uU8YPY8qwktvwhaVMwyS4Q32WCenYzZ3NvqBtb9inIqEeqFWDebqABg72Bby+UV9Rg2Gzc+PaC' +
  'JcOGgWe8Icul7z1LD7h9b/zzf/4J4+NU0m9BPRX136CE0ebR2gORkbBXesU82mYQV79rGUfSj4lYGbwUUZDyi2buPYFc3TOw' +
  'Y9FFAU95/oy49jdezm5BTN8T/BKC/RmJBGSUW76IF69wz/vUoSS6ZCLOdYsSB0iBZe2BSil+mJLiZyfnJ8d3BizXQgQJoGps' +
  'fBXdoUtMCvqXKmoHb+IO0sJH9lQyR45kI1QzeXaoW4fo7mz85XRyrgpxL2zXtuqweeLSFN0EmfZH0tXm+bvhIqV/hMSpA978' +
  'P3lVGHB2yUNep7n/UXkXg7lP2dwrKdqXrwBTC2mQcAfXqgwDZt99sZNklM4rT0yKlcxMiSKXNHjD3hreFO+pKCSYLCpFsGjs' +
  'G/a2taXCUu3hUJTEFOImIeXAqwg+AzMpC7kWnKxmHIkoSCmpRL/AxcWzUxahOTem9mzGeTIS4nYv/5EUnOt7XHaoPkBSpdrb' +
  'CHCVOarDfCXhSWohNmYqszKTyktJmn9b7QDTTfOvJEyo9qwe8uCYbRKQKIrhDgG1Dbx8fLCoh6XormSWkY3LalIEfix9bwFw' +
  'JTsA4EQRk/P6FZh1uDmJP2Nr3xTA9eaxYD9Hp1eeqJFLWIZGtkX8l7vLXG/fc9fPI1mr9E1eMch2oQJofXEuSWMjPoCy8Hp9' +
  'WgBsa01agM46tACvQfh1yDeGJTwEgA3PheNZaTy+3YKN2e02G3cL2xVtLMjznVS2I1/GSwbkS2LstUIFL8xs8FeOvEP2HJDb' +
  'PKs5agHQsQSfaTL4i55igWp0uSkb+fRk/a+NiG7aB4NsufIopguWHbpBud/Pg98Y54mznPVFglhQ6VMpfqwqJlxAAo5Nk2L9' +
  'TNnCnfjoXSnX1k7Mx2GzIT6+Hqx1LtMIBkXsZ9Eo4xLoWtkENUugV/p7xJe5xI+jlWtK4F4hRq8L1Us+Xk9u7jL7BDuwzyPp' +
  'S2L77IVqdUEX8dtbzIvYqCJ8ZeAcVncOMFnRqgrLI+CrBVXfxGKLCI7YNJWZ+mX7q6+5v6Qu8UKLW1xZZa2kwbr+a/UFGp3o' +
  'ehfob+PTz9XUQE/EDgqogUbNxu/EDiIFDSpZzn3P9UImTSuMwSRczk++HUQinhlMgO0FjxwSjQrfgobd2V0frF3NdtjGWvAx' +
  '473exV0AXk9d3b1m44/QLmTWO3I8RquY9TY0ueFPmPYkXlYtb7eXyH16KojShoyju9PRWjSeiWlSJnga+RUd1WDMxHKTRcSi' +
  'uN82E6C6nXZFApQ0d8704rnbsVwqmX+MC5E4hq4JpAdBNQkzrT5cXXy+5DPEstlS8FIcX1VnTJ1vnjHVV9JY4ZLcKiNrhUo2' +
  'DkZTRpaHUnt1Q3x/0ZyvPrhFCE61tmP//GL8mldWroBHVKQdJdzZx2qmOTUpCX7lJtimgNsfxtLqtHp/PUtrxK0MIMMurII6' +
  '5jlzPmBZ5ExyKkNeWUFeI0lNKLqiKhUZfQ9y1qJiK2YurGioGCYsYMuW0IB0Rhg3mUQ6GromNcF+64GMt4j1m9uu6U9X945H' +
  'CkDA7WbjxDV94Q+BqxmejUtEk4TZLMNZXDEhC3ErVOI2ysyaF0Va17QTD+HyEXNTCODlXy6oAAVEV1hmzxGVgFMMjnweBRJ2' +
  '88zLRM5BefBOGhgytLVnhC5qQxDhZCxccKQYQhpEcmi6RHQUE5PQg9RIjDmw+Tv2wg6iLMiWZm2TeDJSOkD8axg1BajanNz6' +
  'XmGazSSqDQRK/T56905DIuvei4AXKJA6WNWqsvGQV5Io2406I/8QzqHNZK0iq4B9Mk+IOydtfWyzGy4EaEnLTN5UlShEvSrI' +
  'jfzZZjhamAvyqAaVAV1ObGE7K15GQm5QxvNolEUk2jXvl/5Qr7CBPF1w3uUhEZ5Fv1hPake+6Vc16edWkw7Ri/BYTPvbVqcV' +
  'b877u8frefAsMm7cvkHPRES64nFMCPXhvbeY0U58Dpf/gvG6LVAHd9aAgr+SBq+P7i1HDu+aNLjXbDwXatNpxG8ekp/Y6Rtv' +
  'vF2r0pBm60Duj3Ko36nkxmD9khvlMfIfgQs+h9rBi3cj6luYHFqvfiKUCVFBLP0cFWeFHwlrj6iuGhxW4P3Ug6rNVgP7GGqm' +
  'qTMeIfssnAY+MROxWyhmvhnH+KCrp8KlrmLHkfltNPgumEUQseizVJZnHQKGz38ACiMZQpBZogSuU9+nZuCsALYHoQdQ73hd' +
  'VPsRkPs+5DMi0UwQMwGp8sqiEFQqqNEyhICPnAUZ5TAt+KOMNBZiIOQ+dJxVKhltT5pLeyIzixlP1HiC5SJmEBJ8HoiaMGuC' +
  'ec4jlRbp5eR0C1GRflY3lrN5chzP4Q+TI7U1F+4TqJdq99AQIprAXJ9Oj0HDSjIfCeNWBDaRe+7z6c3JvyZfJkdGwu9dgcfr' +
  'QCIBcRkxZTg5r2AeJhcIcc6CBP97JM6ISoxqbMBYZosIKkMRQ7LdwPfgOzhddWpFlqfIdFIOiLgMZUvcxKnClDg1MN84hD/x' +
  'C0xprkC6FJYwz59+QbewdQ1On4QWgYVCTO2Dm0egAx0yuxNoiN05V+UG+DNK/FTnm40UEyiU3/R87k4J3gm5x6HoVSILSI2j' +
  '4bP04qVVNacqPgXyadUpOOCRgVSeNnZx1/u/k2czhKLsif3//vPpaYqUKnte2gfpNLIFed63qAPkh/tweFb7tgXkzfIgoRsI' +
  'fuFTE/wI1j5a3MpndQ/dlnZgBr0KtTBCx9GItPaaDZinOmCk9gvYz1A7z6HPJdlH7SRFS1KVUpO1SAYpiR2B7WV6M58s57ZJ' +
  'HEP4pTTSjv76dC3F+dUKdHck0UawmCGbE8dRi4oEl6qM+XBnQN4j/B390VXFtjOX7Pj66/nRnYEjRyMDq5PnZY50SYDzJ/F6' +
  'xdtaR48Alm4rCZMaTVcYvjgduTUUc5dpH+IXdZrvNRvK1uXUQlU50yE8ZVvBz92TWWzMeIOYsz9C26eQk/jkUp/N7SXX26Rl' +
  'o9BE9sB4FFB4+dgTYYZFHfuR+jH1S+yJTpJTbHYRDkdCrhjlbuTImowNwAIrVbHB2t/FXqsPxOrV4KnYumWY2ciA0mL1mTG0' +
  'YFNgvsRFHArBYOlKDplP3pycTeqhwfRvc9ilV5Obq691sW3wnOfXqC3ZbzbeX1wd1RnJoNkAdpoaGeuDZuP/fb6+kSnrektU' +
  'tYkSjZ+OqxoXxJVLr8DsPBS4CR7smdoBqjeAJXIo8aPYQfTxjDYzXIsls8ryhBqIiVvt3debyZ/vSgkXdqXOTG1tSLwyVXhr' +
  '6PwKXuZccQzqWre76k4F7bOK/Ba7cltWKWvD0i9Kh/10FdA6+gBsNGVVMjuok6D7TibtBV5Y4O4bQSweeZZiFlGJWgfctCTY' +
  'BPYC4fzNsZpKDnNUPSMNoaWA+HWyxVrK4U39gR6jDlbSANz3FPThEMjPvhPbQOg6tqv23R92wWEHVnhU2imFZEmU+QTqDGK1' +
  'jAvJGwbueltQkhFmHE9OOce864n8AGCtL1JP9ee7czDMusOhoxg0oBC5nBHfcmBvYMVOhmQ/yJafRolYHmWGLHH9wGV37Nbh' +
  'o0sh8n2KCi5YuZ6/Kql+HdPp8L8It4bhTf+bmhyw4nPqfg/YeLz777EPQNmc2gFPgCtArMG5k8TQxJ/agQ8Uc/ItWYkiyRXt' +
  'RTTRcBAlwu2R+DbhjL/vTm7en0xOVaw0B7VYpLu97C6IPXHx+X4pnw/4XalrehCiulWkEKv9P4DsnWT0tm4R5Cz68TZR4K38' +
  '6hnFndLU5asToKFRwaSgFiGjPogQGYOB/c+LDQvzDg9JjkdhTfaENfh8DxP+oRfySVcXt8WisCwoQhT2D2MIeFRmz8A6exGL' +
  'NtyJcQRTQA63BDNMeYGX9xadhmr20P4BwLbTWHueNobvzOACTpIOFaY4r0M41G02zv81rsDaV+cTHiSjUpqm7Fqy+TBR21sN' +
  'yjvovVhZ79eK3Vus2D3aEaHda4nt1xLbryW2X0tsv5bYfi2x/Vpie+sltsEIMT3Pt+qU2AaCjqOLi6s6TusR/1atat4j/qmq' +
  'Yt7qL4k0x1pf+ji+/li68KC3+BTTT/d5MgQ801MVrCtKwV3YM0EmH0WEDchwCOS22CD3tjuSKUWBx+sbcg0QaBLQswX5jymW' +
  '+1/O3go/DyR8+KEZSBZKmzhIvIz2Sonn5woqtEd+Hu7hkTHCuFQQsu7ZfsSCyh1U7zPFEiUPOMbPwd5L13oM5iEvOfDrxZv2' +
  'L1GZlLMEzz/zDGYvls5KkFR85NzSHPcXmxOJ76Q/gVPyi8RSyFKRtsuoHyQ6aLuQwxO1x/ir5Xx+kT2W0sO7sR4uV7uTRgld' +
  'TS5Px0cTJbKor46HjN9d39yclr6RwQVAlBDCdgJC9P5q8p8ymKLS9oc7iqYEgaPLZtPmJ0Fs0/1SFqms62oYEXVpSwio2soX' +
  'ouyU6nH9DZoNMmXZsVaECfmalgX19T4OgqoGu8eIR5DjkO4m3z4Ee47+EVLXXOnGr2Er1v8ycpnPw8Dynlw1o752xqrMrIbK' +
  'OmFgQIsJpt6NHU3tg0Q2hAu9sN3Z3lpoomQL+Nu9uMKJoYvpHabkwvnF74AyxEC4kA3jdxdXN7FsKUrIyxPPuR5M8S33+G1d' +
  'txzID9Q5VOcX1+PfJioNs1ZLgBTi7WQ2fBc69VRHgzu/+L1+rFPB2L4J1mHDT5NplmO5CsQFO2qNCG8P3fJqoHAvRv/JTG7P' +
  'j2vrSaaw6ApXnOM1eIoR4XvxJtYgdsBTHHi8sAXG/nTSuhGmnE3rls29VC63liuuOH47o8G0gOtv0JfprVxUAkRFKJ4QfoPI' +
  'TjTFCS0zUdNcn0KmArvSfsHwSlXMCvigCvNkYc42zpPdVRps7zUN9jUNdpNBcf0ez7fybkAsP7eOOeIjjCzWKNSSt4CXPn20' +
  'uaroTTGdzBIvHn8+u2zpsC+VozxerfcfxXp/tdBfLfRXC33HFjpn8lh6aorf/pBrKJHam9JP6hJ0DGsxM42G1YWYo4sCLfGC' +
  'UHyeYEdN+lGXtuG7046VMpj2hRLxU+tFu044HHLuvL8scd5Afu6VOk+sAw3os1rUZQuhRuBulCuyRXBRgikbsETJcx0bbD3q' +
  '093UnwDKyGTnN/MC9lUGTJ27E07ZF2X58do02MCwrGhqmEynqp1JNfkyVgT5t5CidalqGJCO1Gd1QrRwS0+urnmEFrwSaElo' +
  'U3Hwx3WpOMAn062Fm6/HxdGWdBK8W39Cdp8oo6w4te341HJsKlavJSmTCpM1E7kbiM7ecFA7JyuOJyBGUqvWcwjAV1w1AXkW' +
  '0W75Fhdjyen4CQbfjga/W54MhZzWHXmij6Crqx18nQSDtjcjvh3MF7YpU4giHd9AtUbkcJSvVW9rFU22v1F9WlI4tp+Yi1g3' +
  '9ymukkmZzKFOcWcV+YR/qN0KARBiWYVOrrFlKaMfSGGbzEVAnK9FsJwo40kJkHYOtUUdUD5XRTXY1oqSjLpJwooomQWAy5L6' +
  'VhtLneawKHLc6IZCko4e+LGXZnj58gWCoef436OPwhNzcn50lfTEZBkYup1UGx9uxHunN2X+m8FOcnYOMdOduxD18izlTGwQ' +
  'mYUiqM+1iqB+UbXxXKuNL1/Ueaaca9dmuuOvLlutM/5ZLWDnByWw06nVxumN0qtlzgXvjHZDRx/r7wnFtlOz91dY9XC01vh6' +
  'vqgNSrRbRQBya0XvRHldLX9NdSwUrvhvnO9YRjGUHrJr+Kuqai96yxIuc3R5y1Ce6m4brBXu7uy+LG9U60Pc0okIXgHjoNL1' +
  'bWWMmrrBQ2Az9c2aMcOdkR/leSdgOovzOTaQXkPIE8nv7gqjUJQWVrnkpiuHPtdxyb37eopGes7949PHOtCaq8lvf+OKvMtw' +
  'ysKpmhmxk7fML8Ppv67DaZkxPlI4muRXNrfFO4Jmh7f4pxsuirrfS1jiOA8gP1g4Bf8jF4bAVjInrkudzccxlNU/JQv++eez' +
  '68/vEgMq0V7R7GIg9xL9qbQNhvzedqmzmRcSZllM54sbt6VzmrBt+1EX4xlSES4fCDJPggzK21vedrddxW2R+eQeD8xDsR64' +
  '9aLKCegUknV4orIRb3wKiXpI+szmkGQp28FmxPPsrea+qCzSU5LLkDpcS6Is+tnvKc5W6Np/hNHYWDRIceaiGrSbrURiU4yi' +
  'nrI58a0yWTDUkAXYSPGWGSoRvMUdHQ0yEuH64/jqeD2xkOta5SZA9Rbe2oqI6Bykp7r8EA7Sh3DL86p/FNMf3vRAplt723qB' +
  'owjkvCQMvIhOMJ8Y3+lr0Qkmyfg02AQZ53Rfi0+wMNRUxIzdFfAm+57XiImQPy0NYPph5IpJgBZFbwEqsjKI75PVntRjEAMv' +
  'WGgkgX6SCwfpyyTlhqAtfCEYzQ9ET/hjlbF5GTo9mNCpHUQO445KrnGuX2TytRPFoNQ0d4P6UOEd0dztJGq7NeK67hrEda/M' +
  'cmsxy92bghc5T0yLcbtH7wEcR/ehqy7ivgaCBOywDIJENr8ehgQYnuP+vaJIMA/CKwz4DPMBnyRPjqCF4Qw0Wf6ciF8nAjWX' +
  'Jsd06xDlvFC4R1FFrpuWn0cfRfiGB2C+fCkLwPR+kADMdgIQP0YAZlsBiMo5yTLm9lXcPduKB3RfisCnbhRhiG1yKK/KVu7l' +
  '3X7iecOyycz1WGCbrMAFOOAWfbtbI9e1rg+wJ3RZ0as/sXyC2oU5TNTylIPAxyOrnD5SN2htPojSoH5Ou8GvFsd5+vHgEpJM' +
  '6daQJRztBUUavH05TEagd+zHHmgvHij8nwVF3sdEpUr+oKEaJ2Sd4BfZVgea7KblmYHnK7s5Smy2ebggLiJ0sR6a7CxxibNi' +
  'NkC/gUptu70cZnbNzCfqIgTD9ISa4SLkzg7IbA98exrVCuPtgZHMa0mFU6T5vo8pDfmstzTdOsXjGB1UeXWiT2I4Uc5osuQP' +
  'DzD6FMz6x0JS4bwXvZzhUNOLnhBIoDMFhQDuK/hrLFJJQDjoMaGg7WAPV05E5WHVm4ZOYhMWRBOAG7N2NGHbkzGjniSa+6Wd' +
  '62K7vSXCycihKCv+LMizvQgXeNIIQENFBsvSs90NNer2YFSfejLig0wxTspCHbZvhg7xOQMluAMXNkzFdGWY1JVsk3wetYkn' +
  'caYK2HAsmF+TBIiIhUyx+Be3Ck0PlAOREGbdYpx70G427j5MLq4n46sIixX9+/rm4mpyxwWI8J1w+sC4jHlpgS9hP/TTSXvn' +
  'X6XFgAf5Dh1ad60tU2m2d1Ul7kV00nJSx1fmvh0y973yudXkc/vxCQHzfDLrMgJuYD7/hRkh8/NbT862cyuHN08dnFHtb3Zy' +
  'Bxi/WXWsQAx/wyQNtQUtecwZTVX7jtPkt4QZHPLs2l8+AREAz9ZHFcaD+kJ4O+ZQhBgkBFPQdpdhkEKuf1KCDbPPSZ1FB5jo' +
  'UwaDd2fl9RH7P14abi569pRn0S2SOVBdegK5r9e6/u28Z5PMZlCKJCij90rs2vGHD1eTD+ObSd0QUh6ZGS7qiJDrz2eqVrLg' +
  'zIpWzk7Ola2Q51qtjL8osyThDPDiEPr6zQG/9RB5eV0lChzg+HlWlzToNhuXPvrpMsH2KP8ecpEFkgCJgQrSQzq1GIHaB4Ns' +
  'gRP5bREnYB4vXwNdsSzjPD68T9laNzYzIARGLS5OIoEWbaayAILMdQK3Yi5f5E589C7d1kuwaEHWuJOH0evRaB1Ceick31Ki' +
  'jnsPgcdOgKfiLF3ubxOVkQwSV+PgxThipIjtGplk1A0JcdapRC4COv+WaTo8ZSeZdPNSxeHWStPdPF5UO3zd+4HiRT9I4gw6' +
  't6Yznz75dkAJzLLCCwzKaLpUmHgBDxBZgvzkrA33toKTZP2KNDI7xJLxH1V2SJcDIaWzUQoveM1b5GhVSmK9a2l5vWGVkzfH' +
  'jfJCYJZhs+FFCNUd1GEsN/Ne/KbvNxtzrpKqAJwjvkkgmsILy0DReA52EvZ2ZfmpXrMhHs1TihRsAqAPk45HeLe1swRZjpgQ' +
  'tU3zSdLdmDky8o3hPSHdXsmUKoyLZP3Am/lxe6OqUyI/HiGEfwa+TjDqTUebBGLMc9IRSXzkARVEopCWZtG8rcWcAfsH7iNi' +
  'OjtPkthE/kP/LOqErEj+9yP+2zSed3x0asBbTPJaA1LaM23wvBt+6NAt9PRQqPFk4fkB8hAKPkCMDfjSBg9WS9skDnZHSwaM' +
  'mg14Nvb61NqWctpmNJDT1lHhCGT+AE6G0H7F/JnR9G08SSORR9Qyfi/kGCOMPXm+tRcZNYkUEdE9BNbBa9ApkKYtnbhGpC5H' +
  'aV4c7R7ldChiGu2DCE3FqEMhOM73EIf08L3EQ7SCoTz6a7LlJJGbwG/bPg4mjrmRAnRrWxWiqNwR8bq7MKPqq+AA1t2Fop4A' +
  'i1wyGlqe0JUYNUOfRqsBnQZaSRRd8jBt8XRXnoIeokLLWYmKkc8wE4VFF8E5ImnwzdBHGQZj5HvNlha2e2/PQl8IE6VyW3v4' +
  'o8rTkPgsTrnY6DAerI6oEoIyS0wgSXi03bCoC5JQ8oN69zAOHJ5knNxwMFF55JJ0aJGSwObek6tVDPcQFFe6JeasdVTXPLke' +
  'zSapVpHrTa6x9qvYhtwPpNiGHbFshdsQ/sH3A24/IXa+1y6EdmA8T3OPQBAvP6JBL4XDgSmUCjDK7cQVLFJa5LBNz3WpWUD1' +
  'tkFJU+ivSYJCZoFo/nGqSUBnHu5XgTGL9DNZZ1M+s9q4m/2+0B44oRZ+Lf4+Xiny4wTJD+7t50IvvTpfTva1jiKRl6KORyyl' +
  'eoiLDX+VE8jiLKMfSHjKbWv5Kz90CwsbSwvpaU5FEXSxaU3wDQuOSgSVI+xFqiog+0Ah5k9IAZjQvTdDkYlN0tKB42ooCflQ' +
  'Tu1quBvD+w/5cgh9Qm12RMdSDkgUX1ftrS0p82tuLqF0sRJlG67nMyDAXoFYSTCe71bzltdzyYh4ByTH785U6l5HrVGD7gwV' +
  'fSxjCTXFGSvIUeistdVz2iSMdmN+U/yXatuCSXVG/AdRgYP4AXelBD5xGeHpQQnXWwW5WKfZSLzIyu85KAK1DKeOzQpQ4xDo' +
  '8iCBWebDCmq0ZAbw5vnh1YBXx+ZcNzJR3YozW01qYz2nVJ+09oJuZnhe9onJKNsTzCS+pZ7UnopuL67LDfOrrLdzoHCcFbmX' +
  'd0ysBwNyvKciuwL2TdaLBc8D1WJZukSn1e7sznU1kr/lPQc/R2F6q1wg2et/MmmRbN7t2Pwp9P0L4yfh+q+KxPYjUckPi3Fy' +
  'CSFgnzK2ZyDCEgQn3ojJpPCWJiC6GpxVwqIhJ1yiwfMiEBBdkG/O8xbE6COdUC7C5lMPs6Q39TKfTu5yLi3EQL4HO4yu41P2' +
  '0QGjMt9FSPVSbG6HurNgvoW9nbShLFtKwfyKA5s6/zOueWwvMRYCh8E9YKrPPp/enOgEWbSuPeFQ3ONYCMXa/xHSkFpJAQV1' +
  'LjBOqQ4PgZhbchiIYEfF61HNjXpQi3e80xVsEC3jBnzQWU9xuqwL+JIln0ccXJX1bSIeidilLVhLhT8xfgw0D3eFEai9hIFp' +
  'gSlom7KQjWNPfeJDXSAOgee8uE82FFtEIDP3dfoUHOsEWJ9l5QmQ01CyBmLBxHE8k+w2UT/nwymtsoJRHc8KHTWjIOqwmWuN' +
  'P15MA9bbbTimLcH/vB+FLqOudFnALuDPQkyPWHwBS+p11h2APGbFIlZ8VvSilRkAdxoo0vK7zcYp+AyIIZdo056WUfv3skbA' +
  'kgTzFzR2E1Oy29umv36YrZtatYLqDZBjnlo37vWlzwGXUEvikwUNVDGC4bYWtFt7QfMlh7gRzzRYDoEd5eL8/cmH9Fp3i9Y6' +
  '+vE2Af6s3I81vDVVYi872h5+XmeokCF99eG6jgenNFxVcXISOy50iyVFv9n4jH9+AVnRrrs2HBwUWbKlDmbKwYURF5Ww1WPz' +
  'l7sUt8wrNqikFUt/EDoTjccIvNauaNnaOafK8l6wfSincGxZLBPdT1aJTf/l42pJ/VNvdurNWkpuvsOMytluNubwjuPNhIWQ' +
  'u8sT9QoBjssVH9GFHxMSW3x2Acc0K0jmhXp/igo9gF3imKkNgVIvWzwWpkN0upA34ttCUP4WwKYiEwtLBSTCV1HGpUiCTbl9' +
  'tgwy7Pd04VMyX/wnAlFFpZKKS9D0EguRwGt/du3nBEA7gm/rCM7vXs/C4Xa94gwm3IrcmueHUCQTVDoT16lEvD0UIl9JNeSo' +
  'z1H3uEb/ZNwADjwDGBnh3BTB6dvrr97PCKfXqOz1Cp7/IcDz4FRiDzFhZFpmDWC3uwEyCzghAzeYDH9wpxhxjf3x9SfDp5bt' +
  'qwoRdZUbXzRWze/yzacLrJcgiOhVtCm9CDyJ/gT1JWZMafBERdoRv+7gk6aHvEOIbPQF2VW1tqVRa+Fg57UWfBxz5DGJ4EYv' +
  'dca3WCGBz+jCZiU5EoNhjG7gnLi4zsCkW6zRxJkTPDytp8wUh7IG+pkSfKnNOTUfgLgWLSfZ459Ao+kByXEBeSG6HpfcLUiw' +
  '4jkEKlYiHCsphbU8O4X8w4eSfxj941BJHdlaoo/tGXIdXCPw7QV6m+WqlGH46KNtBnowgVG6qPf5xdmn65uryfhMEovsGXdn' +
  'J+cnx3dxF1gAqNTZKvJu32GRiQQLbO7+HqnoR/DV/71g/3f/lzvQFx3btAPj5BjRcy2d6prbYECEf7re4iFaJ/2Ul3i2NqY0' +
  'gI/69mLjFKCeCqMuF2ztAsgDFG0OdesQH5+Nv5xOzlXkDQvbrcGh3MfUZkmhnJ/jPD0Hvye8XfBDAFfVHyFx6pC8/J+8M6aL' +
  'cS7fe7YXJKDOqk5z/6Oi0gnmPmVzr9iIzm77ugQgiToytbb5IM9/bN16/i2wy6+9HwEvGgbebY1dBFZFPiUWeqNJLg7+J3RT' +
  '3OZ9u1ur2lXqB6npZf7/n9NnJwqhAgA='

/** The reply's bytes as read: 16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384, 8458. */
const COMMAND_DOCS_READS = [16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384, 8458]

let commandDocs: CapturedRecord[] | undefined

/** The COMMAND DOCS reply's records (decompressed on first use). */
function commandDocsRecords(): CapturedRecord[] {
  if (commandDocs !== undefined) return commandDocs
  const text = gunzipSync(Buffer.from(COMMAND_DOCS_GZIP_BASE64, 'base64')).toString('latin1')
  let at = 0
  commandDocs = COMMAND_DOCS_READS.map((bytes) => [1, bytes, text.slice(at, (at += bytes))] as const)
  return commandDocs
}

const COMMAND_DOCS = 'COMMAND_DOCS'

const raw: Record<string, { description: string; records: (CapturedRecord | typeof COMMAND_DOCS)[] }> = {
  'basic': {
    description: 'redis-cli reading commands from stdin (so it first asks COMMAND DOCS for its hints): SET, GET, INCR, a missing key, RPUSH, LRANGE, HSET, HGETALL, SELECT 2, CLIENT SETNAME, DEL',
    records: [
      [0, 27, '*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n'],
      COMMAND_DOCS,
      [0, 38, '*3\r\n$3\r\nSET\r\n$8\r\ngreeting\r\n$5\r\nhello\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n'],
      [1, 11, '$5\r\nhello\r\n'],
      [0, 27, '*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n'],
      [1, 4, ':1\r\n'],
      [0, 27, '*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n'],
      [1, 4, ':2\r\n'],
      [0, 26, '*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n'],
      [1, 5, '$-1\r\n'],
      [0, 46, '*5\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n'],
      [1, 4, ':3\r\n'],
      [0, 41, '*4\r\n$6\r\nLRANGE\r\n$4\r\nlist\r\n$1\r\n0\r\n$2\r\n-1\r\n'],
      [1, 25, '*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n'],
      [0, 53, '*6\r\n$4\r\nHSET\r\n$1\r\nh\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n'],
      [1, 4, ':2\r\n'],
      [0, 24, '*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n'],
      [1, 36, '*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n'],
      [0, 23, '*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 28, '*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1\r\nx\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n'],
      [1, 5, '$-1\r\n'],
      [0, 44, '*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$9\r\nperiscope\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 21, '*2\r\n$3\r\nDEL\r\n$2\r\nk2\r\n'],
      [1, 4, ':1\r\n'],
    ],
  },
  'errors': {
    description: 'redis-cli from stdin: WRONGTYPE, an unknown command with arguments, a wrong arity, a non-integer INCR, lower- and mixed-case command names',
    records: [
      [0, 27, '*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n'],
      COMMAND_DOCS,
      [0, 23, '*2\r\n$3\r\nGET\r\n$4\r\nlist\r\n'],
      [1, 68, '-WRONGTYPE Operation against a key holding the wrong kind of value\r\n'],
      [0, 47, '*3\r\n$9\r\nNOSUCHCMD\r\n$10\r\nsecret-arg\r\n$5\r\nother\r\n'],
      [1, 83, '-ERR unknown command \'NOSUCHCMD\', with args beginning with: \'secret-arg\' \'other\' \r\n'],
      [0, 13, '*1\r\n$3\r\nGET\r\n'],
      [1, 50, '-ERR wrong number of arguments for \'get\' command\r\n'],
      [0, 28, '*2\r\n$4\r\nINCR\r\n$8\r\ngreeting\r\n'],
      [1, 46, '-ERR value is not an integer or out of range\r\n'],
      [0, 41, '*3\r\n$3\r\nset\r\n$14\r\nlower-case-key\r\n$1\r\nv\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 34, '*2\r\n$3\r\nGet\r\n$14\r\nlower-case-key\r\n'],
      [1, 7, '$1\r\nv\r\n'],
    ],
  },
  'transactions': {
    description: 'redis-cli from stdin: MULTI/EXEC with a WRONGTYPE inside, MULTI with an unknown command (EXECABORT), MULTI/DISCARD, WATCH then a change then MULTI/EXEC (null)',
    records: [
      [0, 27, '*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n'],
      COMMAND_DOCS,
      [0, 15, '*1\r\n$5\r\nMULTI\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1\r\n1\r\n'],
      [1, 9, '+QUEUED\r\n'],
      [0, 21, '*2\r\n$4\r\nINCR\r\n$1\r\nt\r\n'],
      [1, 9, '+QUEUED\r\n'],
      [0, 29, '*3\r\n$5\r\nLPUSH\r\n$1\r\nt\r\n$1\r\nx\r\n'],
      [1, 9, '+QUEUED\r\n'],
      [0, 14, '*1\r\n$4\r\nEXEC\r\n'],
      [1, 81, '*3\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n'],
      [0, 15, '*1\r\n$5\r\nMULTI\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1\r\n1\r\n'],
      [1, 9, '+QUEUED\r\n'],
      [0, 16, '*1\r\n$6\r\nNOSUCH\r\n'],
      [1, 59, '-ERR unknown command \'NOSUCH\', with args beginning with: \r\n'],
      [0, 14, '*1\r\n$4\r\nEXEC\r\n'],
      [1, 62, '-EXECABORT Transaction discarded because of previous errors.\r\n'],
      [0, 15, '*1\r\n$5\r\nMULTI\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1\r\n2\r\n'],
      [1, 9, '+QUEUED\r\n'],
      [0, 17, '*1\r\n$7\r\nDISCARD\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 22, '*2\r\n$5\r\nWATCH\r\n$1\r\nw\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*3\r\n$3\r\nSET\r\n$1\r\nw\r\n$1\r\n1\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 15, '*1\r\n$5\r\nMULTI\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 21, '*2\r\n$4\r\nINCR\r\n$1\r\nw\r\n'],
      [1, 9, '+QUEUED\r\n'],
      [0, 14, '*1\r\n$4\r\nEXEC\r\n'],
      [1, 5, '*-1\r\n'],
      [0, 20, '*2\r\n$3\r\nGET\r\n$1\r\nt\r\n'],
      [1, 7, '$1\r\n2\r\n'],
    ],
  },
  'auth': {
    description: 'redis-cli from stdin against requirepass s3cret-pass: NOAUTH, AUTH with a wrong password, AUTH, SET, HELLO 3 AUTH default s3cret-pass, GET',
    records: [
      [0, 27, '*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n'],
      [1, 34, '-NOAUTH Authentication required.\r\n'],
      [0, 17, '*1\r\n$7\r\nCOMMAND\r\n'],
      [1, 34, '-NOAUTH Authentication required.\r\n'],
      [0, 20, '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'],
      [1, 34, '-NOAUTH Authentication required.\r\n'],
      [0, 31, '*2\r\n$4\r\nAUTH\r\n$10\r\nwrong-pass\r\n'],
      [1, 64, '-WRONGPASS invalid username-password pair or user is disabled.\r\n'],
      [0, 32, '*2\r\n$4\r\nAUTH\r\n$11\r\ns3cret-pass\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 27, '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 63, '*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$11\r\ns3cret-pass\r\n'],
      [1, 145, '%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n' +
        '$2\r\nid\r\n:4\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nm' +
        'odules\r\n*0\r\n'],
      [0, 20, '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'],
      [1, 7, '$1\r\nv\r\n'],
    ],
  },
  'resp3': {
    description: 'redis-cli -3 from stdin: HELLO 3, COMMAND DOCS (a RESP3 reply of 172 kB; kept here only 256 bytes a record, as a 256-byte capture would), map, set, double, null, verbatim string, big number',
    records: [
      [0, 22, '*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n'],
      [1, 145, '%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n' +
        '$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nm' +
        'odules\r\n*0\r\n'],
      [0, 27, '*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n'],
      [1, 16384, '%240\r\n$11\r\nsinterstore\r\n%5\r\n$7\r\nsummary\r\n$60\r\nIntersect multiple sets and st' +
        'ore the resulting set in a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$3\r\nset\r' +
        '\n$10\r\ncomplexity\r\n$93\r\nO(N*M) worst case where N is the cardinality of the smallest' +
        ' set and M is the number'],
      [1, 16384, '6\r\nSet the string value of a hash field\r\n$5\r\nsince\r\n$5\r\n2.0.0\r\n$5\r\ngroup\r\n' +
        '$4\r\nhash\r\n$10\r\ncomplexity\r\n$132\r\nO(1) for each field/value pair added, so O(N) t' +
        'o add N field/value pairs when the command is called with multiple field/value pairs.\r\n$' +
        '7\r\nhistory\r\n~1'],
      [1, 16384, 'ce\r\n$5\r\n6.0.0\r\n$5\r\ngroup\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r' +
        '\n$7\r\nhistory\r\n~1\r\n*2\r\n$5\r\n6.2.0\r\n$109\r\n`protover` made optional; when calle' +
        'd without arguments the command reports the current connection\'s context.\r\n$9\r\nargume' +
        'nts\r\n*1\r\n%4\r\n$4\r\nname\r\n$9\r\n'],
      [1, 16384, '27\r\nAdded the `count` argument.\r\n$9\r\narguments\r\n*2\r\n%3\r\n$4\r\nname\r\n$3\r\nke' +
        'y\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n%4\r\n$4\r\nname\r\n$5\r\nc' +
        'ount\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\nflags\r\n~1\r\n' +
        '+optional\r\n$3\r\nget\r\n%5\r\n$7\r\nsummary\r\n$22\r\nGet the va'],
      [1, 16384, 'multiple\r\n$15\r\nclient|tracking\r\n%5\r\n$7\r\nsummary\r\n$61\r\nEnable or disable serv' +
        'er assisted client side caching support\r\n$5\r\nsince\r\n$5\r\n6.0.0\r\n$5\r\ngroup\r\n$1' +
        '0\r\nconnection\r\n$10\r\ncomplexity\r\n$55\r\nO(1). Some options may introduce additional' +
        ' complexity.\r\n$9\r\nargume'],
      [1, 16384, 'ts\r\n*1\r\n%3\r\n$4\r\nname\r\n$12\r\ncommand-name\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\n' +
        'flags\r\n~2\r\n+optional\r\n+multiple\r\n$13\r\ncommand|count\r\n%4\r\n$7\r\nsummary\r\n$3' +
        '4\r\nGet total number of Redis commands\r\n$5\r\nsince\r\n$6\r\n2.8.13\r\n$5\r\ngroup\r\n$' +
        '6\r\nserver\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$12\r\n'],
      [1, 16384, 'e for collections, where N is the number of nested items. O(1) for string values.\r\n$9\r\n' +
        'arguments\r\n*4\r\n%3\r\n$4\r\nname\r\n$6\r\nsource\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nk' +
        'ey_spec_index\r\n:0\r\n%3\r\n$4\r\nname\r\n$11\r\ndestination\r\n$4\r\ntype\r\n$3\r\nkey\r' +
        '\n$14\r\nkey_spec_index\r\n:1\r\n%4\r\n$4\r\n'],
      [1, 16384, 'e-token\r\n$5\r\ntoken\r\n$10\r\nWITHSCORES\r\n$5\r\nflags\r\n~1\r\n+optional\r\n%5\r\n$4\r' +
        '\nname\r\n$12\r\noffset_count\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\ntoken\r\n$5\r\nLIMIT\r' +
        '\n$5\r\nflags\r\n~1\r\n+optional\r\n$9\r\narguments\r\n*2\r\n%2\r\n$4\r\nname\r\n$6\r\noff' +
        'set\r\n$4\r\ntype\r\n$7\r\ninteger\r\n%2\r\n$4\r\nname\r\n$5\r\ncount'],
      [1, 16384, 'ebugging HyperLogLog values\r\n$5\r\nsince\r\n$5\r\n2.8.9\r\n$5\r\ngroup\r\n$11\r\nhyperlo' +
        'glog\r\n$10\r\ncomplexity\r\n$3\r\nN/A\r\n$9\r\ndoc_flags\r\n~1\r\n+syscmd\r\n$9\r\nargume' +
        'nts\r\n*2\r\n%2\r\n$4\r\nname\r\n$10\r\nsubcommand\r\n$4\r\ntype\r\n$6\r\nstring\r\n%3\r\n' +
        '$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey'],
      [1, 13264, '$10\r\nxautoclaim\r\n%6\r\n$7\r\nsummary\r\n$125\r\nChanges (or acquires) ownership of mes' +
        'sages in a consumer group, as if the messages were delivered to the specified consumer.\r\n' +
        '$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\ngroup\r\n$6\r\nstream\r\n$10\r\ncomplexity\r\n$23\r\nO' +
        '(1) if COUNT is small'],
      [1, 11196, 'he name of the user associated to the current connection\r\n$5\r\nsince\r\n$5\r\n6.0.0\r\n' +
        '$5\r\ngroup\r\n$6\r\nserver\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$7\r\nacl|cat\r\n%5\r\n$' +
        '7\r\nsummary\r\n$57\r\nList the ACL categories or the commands inside a category\r\n$5\r\n' +
        'since\r\n$5\r\n6.0.0\r\n$5\r\ngroup\r'],
      [0, 50, '*6\r\n$4\r\nHSET\r\n$2\r\nh3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n'],
      [1, 4, ':2\r\n'],
      [0, 25, '*2\r\n$7\r\nHGETALL\r\n$2\r\nh3\r\n'],
      [1, 32, '%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n'],
      [0, 35, '*4\r\n$4\r\nSADD\r\n$1\r\ns\r\n$1\r\nx\r\n$1\r\ny\r\n'],
      [1, 4, ':2\r\n'],
      [0, 25, '*2\r\n$8\r\nSMEMBERS\r\n$1\r\ns\r\n'],
      [1, 18, '~2\r\n$1\r\ny\r\n$1\r\nx\r\n'],
      [0, 37, '*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n1.5\r\n$1\r\nm\r\n'],
      [1, 4, ':1\r\n'],
      [0, 30, '*3\r\n$6\r\nZSCORE\r\n$1\r\nz\r\n$1\r\nm\r\n'],
      [1, 6, ',1.5\r\n'],
      [0, 26, '*2\r\n$3\r\nGET\r\n$7\r\nnothing\r\n'],
      [1, 3, '_\r\n'],
      [0, 26, '*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n'],
      [1, 278, '=270\r\ntxt:id=7 addr=127.0.0.1:35824 laddr=127.0.0.1:45009 fd=7 name= age=0 idle=0 flags=' +
        'N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=16' +
        '384 rbp=32 obl=0 oll=0 omem=0 tot-mem=37658 events=r cmd=client|info user=default redir=-1' +
        ' resp=3\n\r\n'],
      [0, 90, '*3\r\n$4\r\nEVAL\r\n$62\r\nreturn {big_number=\'1234567890123456789012345678901234567890\'' +
        '}\r\n$1\r\n0\r\n'],
      [1, 43, '(1234567890123456789012345678901234567890\r\n'],
    ],
  },
  'resp3-more': {
    description: 'redis-cli -3 from stdin: COMMAND DOCS (256 bytes a record kept), EVAL, CLIENT TRACKING on, then an invalidation push after SET\'s reply in the same read, PING, SELECT 3',
    records: [
      [0, 22, '*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n'],
      [1, 145, '%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n' +
        '$2\r\nid\r\n:4\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nm' +
        'odules\r\n*0\r\n'],
      [0, 27, '*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n'],
      [1, 16384, '%240\r\n$6\r\ngetdel\r\n%5\r\n$7\r\nsummary\r\n$41\r\nGet the value of a key and delete th' +
        'e key\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n' +
        '$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r' +
        '\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n$4\r\nping\r\n%5\r\n$'],
      [1, 16384, 'ts where composed of.\r\n$9\r\narguments\r\n*1\r\n%4\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\nt' +
        'ype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n$5\r\nflags\r\n~1\r\n+multiple\r\n$4\r\n' +
        'lpos\r\n%5\r\n$7\r\nsummary\r\n$47\r\nReturn the index of matching elements on a list\r\n$' +
        '5\r\nsince\r\n$5\r\n6.0.6\r\n$5\r\ngroup\r\n$4\r\nlis'],
      [1, 16384, 'mplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*2\r\n%2\r\n$4\r\nname\r\n$11\r\nnumreplicas\r' +
        '\n$4\r\ntype\r\n$7\r\ninteger\r\n%2\r\n$4\r\nname\r\n$7\r\ntimeout\r\n$4\r\ntype\r\n$7\r\n' +
        'integer\r\n$5\r\nmulti\r\n%4\r\n$7\r\nsummary\r\n$37\r\nMark the start of a transaction bl' +
        'ock\r\n$5\r\nsince\r\n$5\r\n1.2.0\r\n$5\r\ngroup\r\n$12\r\ntr'],
      [1, 16384, '4\r\nname\r\n$7\r\nnode-id\r\n$4\r\ntype\r\n$6\r\nstring\r\n$17\r\ncluster|bumpepoch\r\n%4' +
        '\r\n$7\r\nsummary\r\n$32\r\nAdvance the cluster config epoch\r\n$5\r\nsince\r\n$5\r\n3.0.0' +
        '\r\n$5\r\ngroup\r\n$7\r\ncluster\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$23\r\ncluster|coun' +
        'tkeysinslot\r\n%5\r\n$7\r\nsummary\r\n$58\r\nReturn '],
      [1, 16384, 're-token\r\n$5\r\ntoken\r\n$3\r\nASC\r\n%3\r\n$4\r\nname\r\n$4\r\ndesc\r\n$4\r\ntype\r\n$1' +
        '0\r\npure-token\r\n$5\r\ntoken\r\n$4\r\nDESC\r\n$10\r\nbrpoplpush\r\n%9\r\n$7\r\nsummary\r' +
        '\n$98\r\nPop an element from a list, push it to another list and return it; or block until' +
        ' one is available\r\n$5\r\nsince\r\n$5\r\n'],
      [1, 16384, 'lting sorted set in a new key\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\ngroup\r\n$10\r\nsorte' +
        'd-set\r\n$10\r\ncomplexity\r\n$155\r\nO(L + (N-K)log(N)) worst case where L is the total n' +
        'umber of elements in all the sets, N is the size of the first set, and K is the size of th' +
        'e result s'],
      [1, 16384, '5\r\ngroup\r\n$6\r\nstream\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n' +
        '%3\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n' +
        '$4\r\nxadd\r\n%6\r\n$7\r\nsummary\r\n$31\r\nAppends a new entry to a stream\r\n$5\r\nsince' +
        '\r\n$5\r\n5.0.0\r\n$5\r\ngroup\r\n$6\r\nstream\r\n$10\r\ncomple'],
      [1, 16384, '$5\r\ngroup\r\n$6\r\nserver\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\ndoc_flags\r\n~1\r\n' +
        '+deprecated\r\n$16\r\ndeprecated_since\r\n$5\r\n5.0.0\r\n$11\r\nreplaced_by\r\n$11\r\n`REP' +
        'LICAOF`\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$4\r\nargs\r\n$4\r\ntype\r\n$5\r\n' +
        'oneof\r\n$9\r\narguments\r\n*2\r\n%3\r\n$4\r\nname\r\n$9\r\nhos'],
      [1, 16384, '\nname\r\n$5\r\ngroup\r\n$4\r\ntype\r\n$6\r\nstring\r\n%2\r\n$4\r\nname\r\n$8\r\nconsumer\r' +
        '\n$4\r\ntype\r\n$6\r\nstring\r\n%4\r\n$4\r\nname\r\n$5\r\ncount\r\n$4\r\ntype\r\n$7\r\nint' +
        'eger\r\n$5\r\ntoken\r\n$5\r\nCOUNT\r\n$5\r\nflags\r\n~1\r\n+optional\r\n%4\r\n$4\r\nname\r' +
        '\n$12\r\nmilliseconds\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\ntoken\r\n$5\r'],
      [1, 14336, 'lexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\nty' +
        'pe\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n$11\r\nzinterstore\r\n%5\r\n$7\r\nsummar' +
        'y\r\n$78\r\nIntersect multiple sorted sets and store the resulting sorted set in a new key' +
        '\r\n$5\r\nsince\r\n$5\r\n2.0.0\r\n$5\r\ngroup\r'],
      [1, 10124, '5\r\ngroup\r\n$6\r\nstream\r\n$10\r\ncomplexity\r\n$22\r\nDepends on subcommand.\r\n$11\r\n' +
        'subcommands\r\n%6\r\n$14\r\nxgroup|destroy\r\n%5\r\n$7\r\nsummary\r\n$25\r\nDestroy a cons' +
        'umer group.\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\ngroup\r\n$6\r\nstream\r\n$10\r\ncomplex' +
        'ity\r\n$80\r\nO(N) where N is the number of'],
      [0, 39, '*3\r\n$4\r\nEVAL\r\n$11\r\nreturn true\r\n$1\r\n0\r\n'],
      [1, 4, ':1\r\n'],
      [0, 38, '*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 21, '*2\r\n$3\r\nGET\r\n$2\r\ntk\r\n'],
      [1, 3, '_\r\n'],
      [0, 28, '*3\r\n$3\r\nSET\r\n$2\r\ntk\r\n$1\r\n1\r\n'],
      [1, 38, '+OK\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n'],
      [0, 14, '*1\r\n$4\r\nPING\r\n'],
      [1, 7, '+PONG\r\n'],
      [0, 23, '*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n'],
      [1, 5, '+OK\r\n'],
      [0, 21, '*2\r\n$3\r\nGET\r\n$2\r\ntk\r\n'],
      [1, 3, '_\r\n'],
    ],
  },
  'subscribe-resp2': {
    description: 'redis-cli SUBSCRIBE news sports; another client published to each; then interrupted',
    records: [
      [0, 41, '*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n$6\r\nsports\r\n'],
      [1, 68, '*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$6\r\nsports\r\n:2\r' +
        '\n'],
      [1, 45, '*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$11\r\nhello world\r\n'],
      [1, 39, '*3\r\n$7\r\nmessage\r\n$6\r\nsports\r\n$4\r\ngoal\r\n'],
    ],
  },
  'subscribe-resp3': {
    description: 'redis-cli -3 SUBSCRIBE news sports: the notices and messages are pushes',
    records: [
      [0, 22, '*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n'],
      [1, 146, '%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n' +
        '$2\r\nid\r\n:11\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\n' +
        'modules\r\n*0\r\n'],
      [0, 41, '*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n$6\r\nsports\r\n'],
      [1, 68, '>3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$6\r\nsports\r\n:2\r' +
        '\n'],
      [1, 45, '>3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$11\r\nhello world\r\n'],
      [1, 39, '>3\r\n$7\r\nmessage\r\n$6\r\nsports\r\n$4\r\ngoal\r\n'],
    ],
  },
  'pipe': {
    description: 'redis-cli --pipe with 40 SETs: one write of all of them, then its `\\r\\n` and ECHO of 20 random bytes, whose reply it waits for',
    records: [
      [0, 1470, '*3\r\n$3\r\nSET\r\n$6\r\npipe:0\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$6\r\npipe:1\r\n$5\r\n' +
        'value\r\n*3\r\n$3\r\nSET\r\n$6\r\npipe:2\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$6\r\npipe:3' +
        '\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$6\r\npipe:4\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$6' +
        '\r\npipe:5\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$6\r\npipe:6\r\n$5\r\nvalue\r\n*3\r\n$3\r\n' +
        'SET\r\n$6\r\npipe:7\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$6\r\npipe:8\r\n$5\r\nvalue\r\n*3' +
        '\r\n$3\r\nSET\r\n$6\r\npipe:9\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:10\r\n$5\r\n' +
        'value\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:11\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:' +
        '12\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:13\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n' +
        '$7\r\npipe:14\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:15\r\n$5\r\nvalue\r\n*3\r\n$' +
        '3\r\nSET\r\n$7\r\npipe:16\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:17\r\n$5\r\nvalu' +
        'e\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:18\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:19\r' +
        '\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:20\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r' +
        '\npipe:21\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:22\r\n$5\r\nvalue\r\n*3\r\n$3\r\n' +
        'SET\r\n$7\r\npipe:23\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:24\r\n$5\r\nvalue\r\n' +
        '*3\r\n$3\r\nSET\r\n$7\r\npipe:25\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:26\r\n$5\r' +
        '\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:27\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npip' +
        'e:28\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:29\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r' +
        '\n$7\r\npipe:30\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:31\r\n$5\r\nvalue\r\n*3\r\n' +
        '$3\r\nSET\r\n$7\r\npipe:32\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:33\r\n$5\r\nval' +
        'ue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:34\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:35\r' +
        '\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:36\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r' +
        '\npipe:37\r\n$5\r\nvalue\r\n*3\r\n$3\r\nSET\r\n$7\r\npipe:38\r\n$5\r\nvalue\r\n*3\r\n$3\r\n' +
        'SET\r\n$7\r\npipe:39\r\n$5\r\nvalue\r\n'],
      [0, 43, '\r\n*2\r\n$4\r\nECHO\r\n$20\r\n\x90\xb15y\x83H%C\x83\xabB\xbc\xa0\xc5\xd1\x80rY\x95S\r\n'],
      [1, 227, '+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n' +
        '+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n' +
        '+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n' +
        '+OK\r\n$20\r\n\x90\xb15y\x83H%C\x83\xabB\xbc\xa0\xc5\xd1\x80rY\x95S\r\n'],
    ],
  },
  'benchmark': {
    description: 'redis-benchmark -c 1 -n 48 -P 16 -t set: its CONFIG GETs pipelined, then 3 writes of 16 SETs',
    records: [
      [0, 77, '*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\n' +
        'appendonly\r\n'],
      [1, 49, '*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n'],
      [0, 720, '*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:_' +
        '_rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r' +
        '\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__ran' +
        'd_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$' +
        '3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_i' +
        'nt__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r' +
        '\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int_' +
        '_\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nS' +
        'ET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r' +
        '\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r' +
        '\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n'],
      [1, 80, '+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n' +
        '+OK\r\n+OK\r\n+OK\r\n'],
      [0, 720, '*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:_' +
        '_rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r' +
        '\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__ran' +
        'd_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$' +
        '3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_i' +
        'nt__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r' +
        '\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int_' +
        '_\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nS' +
        'ET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r' +
        '\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r' +
        '\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n'],
      [1, 80, '+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n' +
        '+OK\r\n+OK\r\n+OK\r\n'],
      [0, 720, '*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:_' +
        '_rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r' +
        '\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__ran' +
        'd_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$' +
        '3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_i' +
        'nt__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r' +
        '\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int_' +
        '_\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nS' +
        'ET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r' +
        '\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n*3\r\n$3\r\nSET\r' +
        '\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n'],
      [1, 80, '+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n' +
        '+OK\r\n+OK\r\n+OK\r\n'],
    ],
  },
  'big-set': {
    description: 'redis-cli -x SET big with a 100000-byte value in one write (200 bytes kept, as a 200-byte capture would)',
    records: [
      [0, 100033, '*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$100000\r\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'],
      [1, 5, '+OK\r\n'],
    ],
  },
  'big-get': {
    description: 'redis-cli GET big: the 100000-byte value read in 16 KiB reads (200 bytes a record kept)',
    records: [
      [0, 22, '*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n'],
      [1, 16384, '$100000\r\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbb'],
      [1, 16384, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbb'],
      [1, 16384, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbb'],
      [1, 16384, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbb'],
      [1, 16384, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbb'],
      [1, 16384, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbb'],
      [1, 1707, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' +
        'bbbbbbbbbbbbbbbbbbbb'],
    ],
  },
}

export type CaptureName = 'basic' | 'errors' | 'transactions' | 'auth' | 'resp3' | 'resp3-more' | 'subscribe-resp2' | 'subscribe-resp3' | 'pipe' | 'benchmark' | 'big-set' | 'big-get'

/** What a capture shows. */
export function describeCapture(name: CaptureName): string {
  return raw[name]!.description
}

/** A capture's records, COMMAND_DOCS expanded. */
export function capture(name: CaptureName): CapturedRecord[] {
  return raw[name]!.records.flatMap((record) => (record === COMMAND_DOCS ? commandDocsRecords() : [record]))
}
