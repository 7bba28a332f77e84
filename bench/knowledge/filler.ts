/**
 * Filler documents for the latency figures: synthetic passages in Russian and English built from
 * a seeded pseudo-random generator, so 10k or 100k chunks per org cost no files and every run
 * gets the same text. The vocabulary deliberately shares everyday commerce words with the
 * evaluation set (цена, доставка, price, warranty…) and carries product-like codes, so queries
 * meet many matching chunks, as they would in a large real knowledge base.
 */

/** Mulberry32: small, fast, good enough to vary text. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RU_WORDS = (
  'цена стоимость доставка заказ товар склад клиент договор оплата счёт скидка гарантия ремонт сервис поддержка менеджер ' +
  'компания офис сотрудник проект отчёт задача сделка продажа покупатель поставщик партия упаковка кабель сеть сервер ' +
  'устройство модель серия комплект срок неделя месяц год рубль процент условие правило документ заявка запрос ответ ' +
  'качество объём вес размер цвет материал корпус питание мощность скорость порт модуль лицензия подписка пользователь ' +
  'система платформа интеграция настройка обновление версия каталог раздел страница вопрос решение результат регион город'
).split(' ');
const RU_GLUE = 'и в на для по с от до при за без или также всегда обычно новый большой каждый'.split(' ');
const EN_WORDS = (
  'price cost delivery order product warehouse customer contract payment invoice discount warranty repair service support ' +
  'manager company office employee project report task deal sale buyer supplier batch package cable network server device ' +
  'model series kit term week month year euro percent condition rule document request answer quality volume weight size ' +
  'colour material case power speed port module licence subscription user system platform integration setting update ' +
  'version catalogue section page question decision result region city'
).split(' ');
const EN_GLUE = 'the a of for with to from in on at by and or also always usually new large every'.split(' ');

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)]!;
}

function code(rnd: () => number): string {
  const letters = 'ABCDEFGHKLMNPRSTVXZ';
  return `${pick(rnd, letters.split(''))}${pick(rnd, letters.split(''))}-${Math.floor(100 + rnd() * 9900)}`;
}

function sentence(rnd: () => number, russian: boolean): string {
  const words = russian ? RU_WORDS : EN_WORDS;
  const glue = russian ? RU_GLUE : EN_GLUE;
  const n = 8 + Math.floor(rnd() * 10);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    out.push(r < 0.3 ? pick(rnd, glue) : r < 0.33 ? code(rnd) : r < 0.36 ? String(Math.floor(rnd() * 100000)) : pick(rnd, words));
  }
  const s = out.join(' ');
  return `${s[0]!.toUpperCase()}${s.slice(1)}.`;
}

/** A document of about `chars` characters in paragraphs of a few sentences, Russian or English. */
export function fillerDocument(seed: number, chars: number): { title: string; body: string } {
  const rnd = seededRandom(seed);
  const russian = seed % 2 === 0;
  const paragraphs: string[] = [];
  let length = 0;
  while (length < chars) {
    const p = Array.from({ length: 3 + Math.floor(rnd() * 4) }, () => sentence(rnd, russian)).join(' ');
    paragraphs.push(p);
    length += p.length + 2;
  }
  return { title: `${russian ? 'Справочник' : 'Reference'} ${code(rnd)} #${seed}`, body: paragraphs.join('\n\n') };
}
